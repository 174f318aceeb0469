#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests (tests/test_slurm.py).
#
#   tests/slurm/cluster.sh start  STATE_DIR   install what is missing, start, wait until idle
#   tests/slurm/cluster.sh status STATE_DIR   the daemons it started, and sinfo
#   tests/slurm/cluster.sh stop   STATE_DIR   cancel the jobs, stop the daemons it started
#
# Needs root and Debian (or Ubuntu): slurm-wlm, slurmdbd, munge and mariadb-server are
# installed with apt-get if a command of theirs is missing (their services are not
# started). Then it starts, each reached at 127.0.0.1 and with every file under STATE_DIR
# (the Slurm daemons listen on every address, as Slurm does; MUNGE authenticates):
#
#   munged     with a key of its own (STATE_DIR/etc/munge.key)
#   mariadbd   a database server of its own (STATE_DIR/mysql), for slurmdbd
#   slurmdbd   accounting, so that sacct answers (submitit polls its jobs with sacct)
#   slurmctld  and slurmd: one node (this machine, as `slurmd -C` sees it), one partition
#
# and records their process ids in STATE_DIR/pids; `stop` kills exactly those (after
# cancelling the cluster's jobs) and waits for them to exit. Nothing is written to /etc:
# the Slurm commands find the cluster through SLURM_CONF=STATE_DIR/etc/slurm.conf (also
# in STATE_DIR/env, to source). munged wants every folder above its socket searchable
# by all, so STATE_DIR must not be under a private folder (pytest's tmp_path is one).
# The ports are the first free ones from SLURM_TEST_PORT_BASE (default 7410) up: below
# Ray's worker ports (10002-19999), which a Ray test running beside this one may take
# between the check and the bind, and below Linux's ephemeral ports (32768 and up).
#
# On failure `start` prints one line, "cluster.sh: <what> failed: <why>", on stderr,
# stops what it had started and exits 1. A test run killed before its teardown leaves its
# cluster running: `cluster.sh stop` with its folder (/tmp/regexp-slurm-...) stops it.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { echo "usage: $0 start|stop|status STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
ACTION=$1
mkdir -p "$2"
STATE="$(cd "$2" && pwd)"
PIDS="$STATE/pids"
export SLURM_CONF="$STATE/etc/slurm.conf"
# the order they start in; they stop in the reverse order
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

fail() {  # fail WHAT WHY: one line on stderr, stop what started, exit 1
    echo "cluster.sh: $1 failed: $2" >&2
    stop >/dev/null 2>&1 || true
    exit 1
}

tail_of() {  # the last meaningful line of a log, to explain a failure
    if [ -f "$1" ]; then grep -v '^\s*$' "$1" | tail -n 1 | cut -c1-300 || true; fi
}

# --- process ids --------------------------------------------------------------------------

start_time() {  # the start time (clock ticks since boot) of a process; empty if it exited
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }  # the fields after "pid (comm) ": state, ..., start time (22nd)
    # shellcheck disable=SC2086
    set -- $stat
    [ "$1" = Z ] || echo "${20}"  # a zombie has exited (this script has yet to reap it)
}

recorded() {  # recorded NAME: the pid recorded for NAME, if that process still runs
    local name pid since
    [ -f "$PIDS" ] || return 0
    while read -r name pid since; do
        if [ "$name" = "$1" ] && [ -n "$pid" ] && [ "$(start_time "$pid")" = "$since" ]; then
            echo "$pid"  # the same process, not another one that got its pid since
        fi
    done <"$PIDS"
}

launch() {  # launch NAME COMMAND...: run in its own session, record its pid
    local name=$1 pid
    shift
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    pid=$!  # setsid execs the command (it is no group leader here), so this is its pid
    echo "$name $pid $(start_time "$pid")" >>"$PIDS"
}

wait_until() {  # wait_until SECONDS NAME COMMAND...: until COMMAND succeeds, while NAME runs
    local seconds=$1 name=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >"$STATE/log/probe.out" 2>&1; do
        if [ -z "$(recorded "$name")" ]; then
            fail "starting $name" "it exited: $(tail_of "$STATE/log/$name.out")"
        fi
        if [ $SECONDS -ge $deadline ]; then
            fail "starting $name" "not ready after ${seconds} s: \`$*\` says: $(tail_of \
                "$STATE/log/probe.out") (its log: $STATE/log/$name.out)"
        fi
        sleep 0.3
    done
}

# --- install ------------------------------------------------------------------------------

install_packages() {
    local missing=0 cmd log="$STATE/log/apt-get.log" policy=/usr/sbin/policy-rc.d made=0
    for cmd in munged mungekey slurmctld slurmd slurmdbd sinfo squeue sacct sacctmgr scancel \
        mariadbd mariadb-install-db mariadb; do
        command -v "$cmd" >/dev/null || missing=1
    done
    [ $missing -eq 1 ] || return 0
    command -v apt-get >/dev/null || fail "installing Slurm" "no apt-get on this machine"
    # The packages would start their services (with their own configs): not here
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # however this script ends
    fi
    local rc=0
    {
        # one apt-get at a time among the tests' scripts (Chromium's install too): apt-get
        # update does not wait for the lists lock, it fails at once
        exec 9>/tmp/regexp-apt.lock && flock -w 600 9 &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
                --no-install-recommends slurm-wlm slurmdbd munge mariadb-server
    } >"$log" 2>&1 || rc=$?
    exec 9>&-
    if [ $made -eq 1 ]; then rm -f "$policy" && trap - EXIT; fi
    [ $rc -eq 0 ] ||
        fail "apt-get install slurm-wlm slurmdbd munge mariadb-server" "$(tail_of "$log")"
}

# --- configuration ------------------------------------------------------------------------

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_ports() {  # free_ports N: N ports nobody listens on, from SLURM_TEST_PORT_BASE up, in PORTS
    local port=${SLURM_TEST_PORT_BASE:-7410}
    PORTS=()
    while [ ${#PORTS[@]} -lt "$1" ]; do
        [ "$port" -lt 65000 ] || fail "finding free ports" "none left"
        if port_free "$port"; then PORTS+=("$port"); fi
        port=$((port + 1))
    done
}

fill() {  # fill TEMPLATE OUTPUT: replace the @NAMES@
    sed -e "s|@STATE@|$STATE|g" -e "s|@HOST@|$HOST|g" -e "s|@NODE@|$NODE|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" \
        -e "s|@MEM_PER_CPU@|$MEM_PER_CPU|g" \
        "$1" >"$2"
}

configure() {
    HOST=$(uname -n)
    HOST=${HOST%%.*}  # the short name, as slurmd takes its node name
    # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1
    # RealMemory=24105"
    NODE=$(slurmd -C 2>/dev/null | grep '^NodeName=' | head -n 1) ||
        fail "slurmd -C" "$(slurmd -C 2>&1 | tail -n 1)"
    NODE="NodeName=$HOST ${NODE#NodeName=* }"
    local cpus memory
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$NODE")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE")
    if [ -z "$cpus" ] || [ -z "$memory" ]; then
        fail "slurmd -C" "no CPUs or RealMemory in: $NODE"
    fi
    MEM_PER_CPU=$((memory / cpus))  # a job that asks for no memory gets its CPUs' share
    free_ports 4
    DB_PORT=${PORTS[0]} DBD_PORT=${PORTS[1]} CTLD_PORT=${PORTS[2]} SLURMD_PORT=${PORTS[3]}
    DB_PASS=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    mkdir -p "$STATE/etc" "$STATE/log" "$STATE/run" "$STATE/slurmctld" "$STATE/slurmd"
    chmod 700 "$STATE/etc"  # the munge key and the database password
    fill "$HERE/slurm.conf.in" "$STATE/etc/slurm.conf"
    (umask 077 && fill "$HERE/slurmdbd.conf.in" "$STATE/etc/slurmdbd.conf")
    : >"$STATE/etc/plugstack.conf"
    echo "export SLURM_CONF=$SLURM_CONF" >"$STATE/env"
}

# --- the daemons --------------------------------------------------------------------------

munge_works() {
    munge -n -S "$STATE/munge/munge.socket.2" | unmunge -S "$STATE/munge/munge.socket.2"
}

start_munged() {
    [ -f "$STATE/etc/munge.key" ] || mungekey -c -k "$STATE/etc/munge.key" ||
        fail "mungekey" "could not create $STATE/etc/munge.key"
    mkdir -p "$STATE/munge" && chmod 755 "$STATE/munge"
    launch munged munged -F --socket="$STATE/munge/munge.socket.2" \
        --key-file="$STATE/etc/munge.key" --pid-file="$STATE/run/munged.pid" \
        --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
    wait_until 20 munged munge_works
}

db() { mariadb --no-defaults --socket="$STATE/mysql/mysql.sock" -u root "$@"; }

start_mariadbd() {
    # small and fast: a throwaway database that only slurmdbd uses
    local opts=(--innodb-buffer-pool-size=64M --innodb-log-file-size=16M
        --innodb-flush-log-at-trx-commit=0 --innodb-lock-wait-timeout=900)
    if [ ! -d "$STATE/mysql/data" ]; then
        mkdir -p "$STATE/mysql"
        mariadb-install-db --no-defaults --datadir="$STATE/mysql/data" --user=root \
            --auth-root-authentication-method=socket --skip-test-db "${opts[@]}" \
            >"$STATE/log/mariadb-install-db.log" 2>&1 ||
            fail "mariadb-install-db" "$(tail_of "$STATE/log/mariadb-install-db.log")"
    fi
    launch mariadbd mariadbd --no-defaults --user=root --datadir="$STATE/mysql/data" \
        --socket="$STATE/mysql/mysql.sock" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --skip-name-resolve --pid-file="$STATE/run/mariadbd.pid" \
        --log-error="$STATE/log/mariadbd.log" "${opts[@]}"
    wait_until 30 mariadbd db -e "SELECT 1"
    db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
           ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
        fail "creating the database user" "see $STATE/log/mariadbd.log"
}

start_slurmdbd() {
    launch slurmdbd slurmdbd -D
    wait_until 60 slurmdbd sacctmgr -n list cluster
    local clusters
    clusters=$(sacctmgr -n -P list cluster format=cluster)
    if ! grep -qx regexptest <<<"$clusters"; then
        sacctmgr -i add cluster regexptest >>"$STATE/log/sacctmgr.log" 2>&1 ||
            fail "sacctmgr add cluster" "$(tail_of "$STATE/log/sacctmgr.log")"
    fi
}

ctld_up() { scontrol ping | grep -q 'is UP'; }
node_idle() { [ "$(sinfo -h -N -o %T)" = idle ]; }
sacct_answers() { [ -z "$(sacct -n -X -P -o JobID -S now 2>&1 >/dev/null)" ]; }

start_slurm() {
    launch slurmctld slurmctld -D -f "$SLURM_CONF"
    wait_until 30 slurmctld ctld_up
    launch slurmd slurmd -D -f "$SLURM_CONF"
    wait_until 30 slurmd node_idle
    wait_until 30 slurmctld sacct_answers
}

start() {
    [ "$(id -u)" -eq 0 ] || fail "starting the cluster" "it needs root (this is uid $(id -u))"
    local dir=$STATE
    while [ "$dir" != / ]; do  # munged's check, made early and said plainly
        [ -z "$(find "$dir" -maxdepth 0 ! -perm -o=x)" ] ||
            fail "starting munged" "$dir is not searchable by all; use another STATE_DIR"
        dir=$(dirname "$dir")
    done
    if [ -f "$PIDS" ]; then
        if status >/dev/null 2>&1; then
            echo "already running; SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        stop >/dev/null  # what is left of an earlier start
    fi
    mkdir -p "$STATE/log"
    install_packages
    configure
    : >"$PIDS"
    start_munged
    start_mariadbd
    start_slurmdbd
    start_slurm
    echo "started in ${SECONDS} s: Slurm $(sinfo --version | cut -d' ' -f2), node $HOST idle"
    echo "SLURM_CONF=$SLURM_CONF"
}

# --- status, stop -------------------------------------------------------------------------

status() {
    local name pid ok=0
    [ -f "$PIDS" ] || { echo "not started (no $PIDS)"; return 1; }
    for name in "${DAEMONS[@]}"; do
        pid=$(recorded "$name")
        if [ -n "$pid" ]; then
            echo "$name: running, pid $pid"
        else
            echo "$name: not running"
            ok=1
        fi
    done
    [ $ok -ne 0 ] || sinfo
    return $ok
}

stop() {
    local name pid jobs i pids=() deadline
    [ -f "$PIDS" ] || { echo "nothing to stop (no $PIDS)"; return 0; }
    if [ -n "$(recorded slurmctld)" ] && [ -n "$(recorded slurmd)" ]; then
        # the jobs' processes belong to slurmd's slurmstepd: cancel the jobs, and wait
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs || true
            deadline=$((SECONDS + 30))
            while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do
                sleep 0.5
            done
        fi
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[$i]}
        pid=$(recorded "$name")
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 30))
        while [ -n "$(recorded "$name")" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if [ -n "$(recorded "$name")" ]; then
            echo "$name (pid $pid) did not exit within 30 s of SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            while [ -n "$(recorded "$name")" ]; do sleep 0.2; done
        fi
        pids+=("$name $pid")
    done
    mv "$PIDS" "$PIDS.stopped"
    echo "stopped: ${pids[*]:-nothing was running}"
}

case $ACTION in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
