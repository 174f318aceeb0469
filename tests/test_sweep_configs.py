"""A sweep's jobs are composed as Hydra's ``load_sweep_config`` composes them, once per
choice of config groups (``regexp.sweep_configs``), and the sweeper leaves the composing
to the fused launchers."""

import collections
import copy
import os
import re
from pathlib import Path

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from regexp import sweep_configs
from regexp.cli import main
from regexp.launcher import FusedLauncherBase, _task_config
from regexp.sweep_configs import SweepComposer, same

ROOT = Path(__file__).resolve().parent.parent

# One job's overrides per case: every kind of override Hydra takes. The master config of
# each sweep below is Hydra's own; each case is composed by Hydra and by the composer.
CASES = {
    "value": ["seed=3"],
    "values": ["reg.lam=1e-3", "seed=4", "trainer.epochs=7"],
    "quoted": ["experiment_name='a quoted, string'"],
    "double quoted": ['experiment_name="b4 = ${seed}"'],
    "null": ["experiment_name=null"],
    "list": ["model.width=[8,4]", "model.depth=2"],
    "dict into a group's node": ["dataset={n_samples: 100, cluster_std: 0.5}"],
    "dict replacing a spec": ["reg.hidden.activity=null", "reg.hidden.activity={kind: l2, lam: 1}"],
    "group": ["reg=l2_kernel"],
    "experiment": ["experiment=b4_l1_activity"],
    "dataset": ["dataset=moons"],
    "groups": ["optimizer=sgd", "trainer=early_stopping", "dataset=digits"],
    "group and values": ["reg=l2_kernel", "reg.lam=0.5", "seed=2"],
    "experiment and group": ["experiment=b4_l1_activity", "reg=none"],
    "group twice": ["reg=l1_activity", "reg=l2_kernel"],
    "append": ["+new.key=1"],
    "append a dict": ["+new={a: {b: 2}}"],
    "force": ["++seed=5"],
    "force new": ["++brand.new=[1, 2]"],
    "delete": ["~published"],
    "delete with value": ["~seed=0"],
    "delete a spec": ["reg=l1_activity", "~reg.hidden.activity"],
    "append a group": ["+tracking=mlflow"],
    "group at a package": ["+reg@extra=l2_kernel"],
    "interpolation": ["seed=${trainer.epochs}"],
    "interpolation into hydra": ["experiment_name=${hydra.job.name}_${reg.name}"],
    "string for a number": ["trainer.epochs=abc"],
    "resume": ["resume=/some/sweep", "seed=1"],
    "hydra chdir": ["hydra.job.chdir=true", "seed=1"],
    "hydra subdir": ["hydra.sweep.subdir=x_${hydra.job.num}_${seed}", "seed=1"],
    "hydra dirname": [
        "hydra.job.config.override_dirname.exclude_keys=[seed]",
        "seed=1",
        "reg.lam=0.1",
    ],  # fmt: skip
    "hydra group": ["hydra/job_logging=disabled"],
    "hydra runtime": ["hydra.runtime.cwd=/elsewhere", "seed=1"],
    "hydra choices": ["+hydra.runtime.choices.extra=x"],
    "hydra job name": ["hydra.job.name=other"],
    "hydra env copy": ["hydra.job.env_copy=[HOME]"],
    "hydra whole node": ["hydra.job={name: other, chdir: false}"],
    "searchpath": [f"hydra.searchpath=[file://{ROOT}/tests/golden]"],
}

ERRORS = {  # Hydra's errors, raised as they are for the job that has them
    "unknown option": ["reg=nope"],
    "unknown key": ["trainer.epochz=3"],
    "append existing": ["+seed=1"],
    "delete missing": ["~nope"],
    "delete wrong value": ["~seed=7"],
    "force-add a group": ["++reg=l2_kernel"],
    "dict with new keys": ["published={a: 1, b: [1, 2]}"],
    "delete null": ["~experiment_name=null"],
    "added interpolation followed": ["+alias=${hydra.runtime}", "alias.cwd=/elsewhere"],
    "unreadable": ["reg.lam=[1"],
    "sweep in a job": ["seed=1,2"],
}


def _in_a_sweep(monkeypatch, tmp_path, args, check):
    """``regexp run -m ARGS`` up to its launcher, where ``check(launcher, job_overrides)``
    runs with Hydra's own master config and config loader, in Hydra's state; nothing
    trains. Returns what ``check`` returned."""
    seen = []

    def launch(self, job_overrides, initial_job_idx):
        seen.append(check(self, job_overrides))
        raise SystemExit(0)

    monkeypatch.setattr(FusedLauncherBase, "launch", launch)
    assert main(["run", "-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"]) == 0
    assert len(seen) == 1
    return seen[0]


def _outcome(compose, overrides, num):
    """What composing a job gives: its config and what resolving it gives, or the error."""
    try:
        cfg = compose(list(overrides))
    except Exception as e:
        return None, (type(e), str(e), type(e.__cause__), str(e.__cause__))
    with open_dict(cfg):
        cfg.hydra.job.id = cfg.hydra.job.num = num
    task = _task_config(cfg)
    resolved = {"yaml": OmegaConf.to_yaml(cfg),
                "task": _or_error(lambda: OmegaConf.to_container(task, resolve=True))}  # fmt: skip
    for key in ("sweep.dir", "sweep.subdir", "job.override_dirname"):
        resolved[key] = _or_error(lambda key=key: str(OmegaConf.select(cfg, f"hydra.{key}")))
    return cfg, resolved


def _or_error(get):
    try:
        return get()
    except Exception as e:
        return type(e), str(e)


def _compare(launcher, jobs):
    """Each job composed by Hydra's ``load_sweep_config`` and by one composer: the
    differences, as (job, what) pairs. Every job is composed twice by the composer (the
    second from what the first left), and the first copy is then changed as run_job
    changes it, to show that the jobs do not share nodes."""
    loader, master = launcher.hydra_context.config_loader, launcher.config
    composer = SweepComposer(loader, master)
    assert composer.exact
    differences = []
    for num, job in enumerate(jobs):
        theirs, expected = _outcome(lambda o: loader.load_sweep_config(master, o), job, num)
        for attempt in range(2):
            ours, got = _outcome(composer.compose, job, num)
            if got != expected:
                differences.append((job, attempt, got, expected))
            elif ours is not None and not same(ours, theirs):
                differences.append((job, attempt, "not the same tree"))
            if ours is not None and attempt == 0:
                with read_write(ours.hydra), open_dict(ours.hydra):
                    ours.hydra.runtime.output_dir = "/changed"
                    ours.hydra.job.env_set.CHANGED = "1"
                with open_dict(ours):
                    ours.seed = 12345
    return differences, composer


def test_every_kind_of_override_composes_as_hydra_composes_it(monkeypatch, tmp_path):
    jobs = [*CASES.values(), *ERRORS.values()]
    differences, composer = _in_a_sweep(monkeypatch, tmp_path, ["seed=0,1"],
                                        lambda launcher, _: _compare(launcher, jobs))  # fmt: skip
    assert differences == []
    choices = {(sp, groups) for sp, groups in composer.composed}
    assert composer.compositions == len(choices) < len(CASES)


def test_the_jobs_of_a_real_sweep_compose_as_hydra_composes_them(monkeypatch, tmp_path):
    """A sweep over groups and values with Hydra overrides on its command line: the jobs
    are the sweeper's own."""
    args = ["reg=l1_activity,l2_kernel", "reg.lam=0.1,0.2", "seed=0,1", "hydra.job.chdir=true",
            "hydra/job_logging=disabled",
            "hydra.sweep.subdir=${hydra.job.num}_${reg.lam}"]  # fmt: skip

    def check(launcher, job_overrides):
        return len(job_overrides), _compare(launcher, job_overrides)

    count, (differences, composer) = _in_a_sweep(monkeypatch, tmp_path, args, check)
    assert count == 8 and differences == []
    assert composer.compositions == 2  # one per reg


def test_a_users_config_folders_compose_as_hydra_composes_them(monkeypatch, tmp_path):
    mine = tmp_path / "mine"
    (mine / "reg").mkdir(parents=True)
    (mine / "experiment").mkdir()
    (mine / "reg" / "mine.yaml").write_text(
        "defaults: [none]\nname: mine\nlam: 0.3\nhidden:\n  kernel: {kind: l2, lam: '${reg.lam}'}\n"
    )
    (mine / "experiment" / "ours.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /reg: mine\nexperiment_name: ours\n"
    )
    other = tmp_path / "other"
    (other / "reg").mkdir(parents=True)
    (other / "reg" / "theirs.yaml").write_text("defaults: [none]\nname: theirs\n")
    # a node that is an interpolation of Hydra's runtime node: overrides through it
    (other / "reg" / "aliased.yaml").write_text(
        "defaults: [none]\nname: aliased\n"
        "alias: ${hydra.runtime}\nchoice: ${hydra.runtime.choices}\n"
    )
    jobs = [["reg=mine"], ["experiment=ours", "reg.lam=0.5"], ["reg=theirs"], ["reg=nope"],
            ["reg=mine", "seed=3"], ["reg=aliased", "reg.alias.cwd=/x"],
            ["reg=aliased", "~reg.alias.cwd"], ["reg=aliased", "+reg.alias.extra=1"],
            ["reg=aliased", "reg.choice={extra: x}"], ["reg=aliased", "seed=3"]]  # fmt: skip
    args = ["--config-dir", str(mine), f"hydra.searchpath=[file://{other}]", "reg=mine,theirs"]
    differences, composer = _in_a_sweep(monkeypatch, tmp_path, args,
                                        lambda launcher, _: _compare(launcher, jobs))  # fmt: skip
    assert differences == []
    assert composer.compositions == 4


def test_a_composer_that_sets_hydras_runtime_too_early_is_caught(monkeypatch, tmp_path):
    """The comparison can fail: set before every job's overrides (as the composer does
    for the jobs whose overrides cannot reach it), Hydra's runtime settings differ for
    the jobs that override them."""
    monkeypatch.setattr(sweep_configs._Composed, "reaches_runtime", lambda self, o: False)
    jobs = list(CASES.values())
    differences, _ = _in_a_sweep(monkeypatch, tmp_path, ["seed=0,1"],
                                 lambda launcher, _: _compare(launcher, jobs))  # fmt: skip
    wrong = {" ".join(job) for job, *_ in differences}
    assert {" ".join(CASES[k]) for k in ("hydra runtime", "hydra choices",
                                          "hydra env copy")} <= wrong  # fmt: skip


def test_a_changed_value_is_a_difference(monkeypatch, tmp_path):
    """The comparison can fail: a config with one value, flag or type changed is not the
    same."""

    def check(launcher, _):
        loader, master = launcher.hydra_context.config_loader, launcher.config
        cfg = loader.load_sweep_config(master, ["seed=3"])
        changed = []
        for change in (
            lambda c: setattr(c, "seed", 4),
            lambda c: OmegaConf.set_struct(c.reg, False),
            lambda c: c.hydra.overrides.task.append("x=1"),
            lambda c: c.hydra.runtime.__setattr__("cwd", "/x"),
        ):
            other = copy.deepcopy(cfg)
            with open_dict(other):
                change(other)
            changed.append(same(cfg, other))
        typed = copy.deepcopy(cfg)
        typed.hydra._get_node("runtime")._metadata.ref_type = DictConfig
        return same(cfg, copy.deepcopy(cfg)), changed, same(cfg, typed)

    unchanged, changed, typed = _in_a_sweep(monkeypatch, tmp_path, ["seed=0,1"], check)
    assert unchanged and changed == [False] * 4 and not typed


def test_another_hydra_or_loader_is_left_to_hydra(monkeypatch, tmp_path):
    """The mirrored lines are Hydra 1.3.8's (the version requirements.lock pins):
    another version, or a loader of another class, composes with Hydra's own
    load_sweep_config."""
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^hydra-core==(\S+) ", lock, re.M).group(1) == sweep_configs.PINNED_HYDRA

    def check(launcher, _):
        loader, master = launcher.hydra_context.config_loader, launcher.config
        calls = []
        original = ConfigLoaderImpl.load_sweep_config

        def counted(self, *a, **k):
            calls.append(a)
            return original(self, *a, **k)

        monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counted)
        monkeypatch.setattr(sweep_configs, "PINNED_HYDRA", "0.0")
        other = SweepComposer(loader, master)
        cfg = other.compose(["seed=3"])
        return other.exact, len(calls), cfg.seed

    assert _in_a_sweep(monkeypatch, tmp_path, ["seed=0,1"], check) == (False, 1, 3)


def test_the_task_config_is_the_job_config_without_hydra(monkeypatch, tmp_path):
    """``_task_config`` skips copying the ``hydra`` node; the result is what copying it
    and dropping it gives, and the job's config is left as it was."""

    def check(launcher, _):
        loader, master = launcher.hydra_context.config_loader, launcher.config
        cfg = loader.load_sweep_config(master, ["reg=l1_activity", "seed=3"])
        before = copy.deepcopy(cfg)
        task = _task_config(cfg)
        expected = copy.deepcopy(cfg)
        with read_write(expected), open_dict(expected):
            expected.pop("hydra")
        return same(task, expected), same(cfg, before), "hydra" in task

    assert _in_a_sweep(monkeypatch, tmp_path, ["seed=0,1"], check) == (True, True, False)


def _basic_sweeper() -> type:
    """Hydra's BasicSweeper, as Hydra's plugins see it: Hydra loads its plugin modules
    afresh once per process, which defines their classes anew."""
    import sys

    from hydra.core.plugins import Plugins

    Plugins.instance()
    return sys.modules["hydra._internal.core_plugins.basic_sweeper"].BasicSweeper


def _count_compositions(monkeypatch, args):
    """Hydra's full compositions (files merged by ``_compose_config_from_defaults_list``)
    while ``regexp run -m ARGS`` trains: before the sweeper starts, in the sweeper, in
    the launcher; and the sweeper's class."""
    where, counts, sweepers = ["before"], collections.Counter(), []
    merge = ConfigLoaderImpl._compose_config_from_defaults_list

    def counted(self, *a, **k):
        counts[where[-1]] += 1
        return merge(self, *a, **k)

    def inside(name, method):
        def wrapped(self, *a, **k):
            if name == "sweeper":
                sweepers.append(type(self).__name__)
            where.append(name)
            try:
                return method(self, *a, **k)
            finally:
                where.pop()

        return wrapped

    monkeypatch.setattr(ConfigLoaderImpl, "_compose_config_from_defaults_list", counted)
    basic = _basic_sweeper()
    monkeypatch.setattr(basic, "sweep", inside("sweeper", basic.sweep))
    monkeypatch.setattr(FusedLauncherBase, "launch",
                        inside("launcher", FusedLauncherBase.launch))  # fmt: skip
    assert main(["run", "-m", *args]) == 0
    monkeypatch.undo()
    return counts, sweepers


def test_a_fused_sweep_composes_once_per_choice_of_groups(monkeypatch, tmp_path):
    """Once per distinct reg in the launcher, never in the sweeper; what ``regexp run``
    checks first and Hydra's master config do not grow with the jobs."""
    six, sweepers = _count_compositions(monkeypatch, [
        "reg=l1_activity,l2_kernel", "seed=0,1,2", "trainer.epochs=1",
        f"hydra.sweep.dir={tmp_path / 'six'}"])  # fmt: skip
    assert len(list((tmp_path / "six").glob("*/metrics.json"))) == 6
    assert sweepers == ["RegexpSweeper"]
    assert six["launcher"] == 2 and six["sweeper"] == 0
    two, _ = _count_compositions(monkeypatch, [
        "reg=l1_activity,l2_kernel", "seed=0", "trainer.epochs=1",
        f"hydra.sweep.dir={tmp_path / 'two'}"])  # fmt: skip
    assert two == six


def test_another_launcher_is_validated_as_the_basic_sweeper_does(monkeypatch, tmp_path):
    validated = []
    original = Sweeper.validate_batch_is_legal

    def counted(self, batch):
        validated.append((type(self).__name__, type(self.launcher).__name__, len(batch)))
        return original(self, batch)

    monkeypatch.setattr(Sweeper, "validate_batch_is_legal", counted)
    counts, _ = _count_compositions(monkeypatch, ["seed=0,1", "trainer.epochs=1",
                                                  "hydra/launcher=basic",
                                                  f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    assert validated == [("RegexpSweeper", "BasicLauncher", 2)]
    assert counts["sweeper"] == 4  # the sweeper's two, then the basic launcher's two
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2


def test_the_sweeper_takes_the_basic_sweepers_settings(monkeypatch, tmp_path):
    """``hydra.sweeper.params`` (here from a user's experiment file) and
    ``max_batch_size`` work as Hydra's basic sweeper's."""
    mine = tmp_path / "mine" / "experiment"
    mine.mkdir(parents=True)
    (mine / "seeds.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      seed: 0,1\n"
    )
    seen = []

    def launch(self, job_overrides, initial_job_idx):
        seen.append((initial_job_idx, [list(j) for j in job_overrides]))
        return [_fake_return(j) for j in job_overrides]

    monkeypatch.setattr(FusedLauncherBase, "launch", launch)
    rc = main(["run", "-m", "--config-dir", str(tmp_path / "mine"), "experiment=seeds",
               "reg.lam=0.1,0.2", "hydra.sweeper.max_batch_size=3",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"])  # fmt: skip
    assert rc == 0
    assert [(i, len(jobs)) for i, jobs in seen] == [(0, 3), (3, 1)]
    jobs = sorted(sorted(j) for _, batch in seen for j in batch)
    assert jobs == sorted(sorted(["experiment=seeds", f"seed={s}", f"reg.lam={v}"])
                          for s in (0, 1) for v in (0.1, 0.2))  # fmt: skip
    multirun = OmegaConf.load(tmp_path / "sweep" / "multirun.yaml")
    assert multirun.hydra.sweeper._target_.endswith(".RegexpSweeper")


def _fake_return(overrides):
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["reg=l1_activity,nope"],
            "job #1: reg='nope' is not accepted; expected one of batchnorm, dropout",
        ),  # fmt: skip
        (
            ["dataset=blobs,iris", "dataset.cluster_std=0.3"],
            "job #1: dataset.cluster_std is not a config key",
        ),  # fmt: skip
    ],
    ids=["option", "key"],
)
@pytest.mark.parametrize("checked_first", [True, False], ids=["regexp run", "launcher"])
def test_a_job_that_does_not_compose_is_one_line(checked_first, args, line, monkeypatch,
                                                 tmp_path, capsys):  # fmt: skip
    """One line naming the job, the key or option and what is accepted (exit 2), whether
    ``regexp run`` finds it before Hydra starts or the launcher finds it (the check before
    Hydra skipped here), and nothing is written."""
    from regexp import compose
    from regexp.compose import Destination

    if not checked_first:
        monkeypatch.setattr(compose, "precheck",
                            lambda a: Destination(True, "hydra.sweep.dir", tmp_path))  # fmt: skip
    rc = main(["run", "-m", *args, "trainer.epochs=1", f"hydra.sweep.dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"regexp: error: {line}"), err
    assert "Traceback" not in err[0]
    assert not list(tmp_path.rglob("config.yaml")) and not list(tmp_path.rglob("metrics.json"))


def test_a_job_folder_is_written_as_before(tmp_path):
    """The whole loop, end to end: a fused sweep's folders hold the composed configs
    (``.hydra/``) Hydra's own composition gives, and every job completes."""
    rc = main(["run", "-m", "reg=l1_activity,l2_kernel", "seed=0,1", "trainer.epochs=1",
               f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    assert rc == 0
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(folders) == 4
    for num, folder in enumerate(folders):
        hydra = OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra
        assert hydra.job.num == num and hydra.runtime.cwd == os.getcwd()
        assert hydra.runtime.choices.reg == ("l1_activity", "l2_kernel")[num // 2]
        assert list(OmegaConf.load(folder / ".hydra" / "overrides.yaml")) == [
            f"reg={('l1_activity', 'l2_kernel')[num // 2]}", f"seed={num % 2}",
            "trainer.epochs=1"]  # fmt: skip
        assert OmegaConf.load(folder / "config.yaml").seed == num % 2
