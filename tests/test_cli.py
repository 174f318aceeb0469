"""The command line: every command's --help, a user's own recipe folders (--config-dir,
hydra.searchpath) in list, check, run and show, and shell completion driven as bash
drives it (COMP_LINE, `regexp -sc query=bash`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from regexp.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
LAM = 0.003  # the user's L2 recipe's strength


def _python(code: str, cwd: Path | None = None, env: dict | None = None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)  # fmt: skip


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_command_answers_help_without_tensorflow(name):
    code = (
        "import sys; from regexp.cli import main\n"
        f"codes = [main([{name!r}, '--help']), main([{name!r}, '-h'])]\n"
        "print('CODES', codes, 'TF' if 'tensorflow' in sys.modules else 'NO_TF')\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "CODES [0, 0] NO_TF", out.stdout + out.stderr
    if name == "run":  # Hydra's own help, titled by conf/config.yaml
        assert out.stdout.count("regexp run: train one configuration") == 2
    else:
        assert out.stdout.count(f"usage: regexp {name}") == 2


def test_the_help_lists_every_command_and_an_unknown_one_is_one_line(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("commands:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in listed] == [c.name for c in COMMANDS]
    assert main(["lst"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'lst'; did you mean list?" in err[0]


@pytest.fixture(scope="module")
def recipes(tmp_path_factory) -> Path:
    """A user's folder: an L2 recipe, one with a bad value, one hidden by a shipped
    namesake, and an experiment that picks the first."""
    folder = tmp_path_factory.mktemp("user") / "my_recipes"
    files = {
        "reg/mine.yaml": f"""\
            defaults: [none]
            name: mine
            lam: {LAM}
            hidden:
              kernel: {{kind: l2, lam: "${{reg.lam}}"}}
            """,
        "reg/bad.yaml": """\
            defaults: [none]
            name: bad
            lam: -1
            hidden:
              kernel: {kind: l2, lam: "${reg.lam}"}
            """,
        "reg/l2_kernel.yaml": "defaults: [none]\nname: l2_kernel\nlam: 0.5\n",
        "experiment/my_exp.yaml": """\
            # @package _global_
            defaults:
              - override /reg: mine
            experiment_name: my_exp
            trainer:
              epochs: 3
            """,
    }
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_list_shows_a_users_recipes_with_their_folder(recipes, capsys):
    for args in (["--config-dir", str(recipes)], [f"hydra.searchpath=[file://{recipes}]"]):
        assert main(["list", *args]) == 0
        lines = capsys.readouterr().out.splitlines()
        reg = lines.index(next(line for line in lines if line.startswith("reg: ")))
        assert "mine" not in lines[reg].split() and "none*" in lines[reg].split()
        assert lines[reg + 1] == f"  yours, from {recipes}: bad mine"
        assert lines[reg + 2].startswith(f"  hidden, from {recipes} (")
        assert lines[reg + 2].endswith("rename yours): l2_kernel")
        assert f"  yours, from {recipes}: my_exp" in lines
    assert main(["list"]) == 0
    assert "yours" not in capsys.readouterr().out


def test_a_missing_user_folder_is_one_line_naming_it(tmp_path, capsys):
    nope = tmp_path / "nope"
    for args in (["list", "--config-dir", str(nope)], ["check", "-cd", str(nope), "reg=mine"],
                 ["run", "--config-dir", str(nope), f"hydra.run.dir={tmp_path}/run"],
                 ["check", f"hydra.searchpath=[file://{nope}]"]):  # fmt: skip
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(nope) in err[0] and err[0].startswith("regexp: error: ")
    assert not (tmp_path / "run").exists()


def test_check_validates_a_users_recipe_and_names_its_file(recipes, capsys):
    assert main(["check", "--config-dir", str(recipes), "reg=mine"]) == 0
    assert main(["check", f"hydra.searchpath=[file://{recipes}]", "experiment=my_exp"]) == 0
    capsys.readouterr()
    assert main(["check", "-cd", str(recipes), "reg=bad"]) == 2
    assert capsys.readouterr().err.strip() == (
        "regexp: error: reg.lam=-1 is not accepted; expected a number >= 0 "
        f"(reg.lam is set in {recipes}/reg/bad.yaml)"
    )
    assert main(["check", "reg=mine"]) == 2  # without the folder, not an option
    assert "reg='mine' is not accepted" in capsys.readouterr().err


@pytest.fixture(scope="module")
def user_run(recipes, tmp_path_factory) -> tuple[Path, Path]:
    """One tiny run from a copy of the user's folder (removed afterwards by one test)."""
    base = tmp_path_factory.mktemp("user_run")
    folder = shutil.copytree(recipes, base / "recipes")
    run = base / "run"
    args = ["run", "--config-dir", str(folder), "experiment=my_exp", "reg=mine",
            "trainer.epochs=2", f"hydra.run.dir={run}"]  # fmt: skip
    assert main(args) == 0
    return run, folder


def test_a_run_from_a_users_folder_records_its_recipe_and_penalty(user_run):
    run, _ = user_run
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["reg"]["name"], cfg["reg"]["lam"], cfg["experiment_name"]) == (
        "mine",
        LAM,
        "my_exp",
    )
    assert cfg["reg"]["hidden"]["kernel"]["kind"] == "l2" and cfg["trainer"]["epochs"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    last = pd.read_csv(run / "history.csv").iloc[-1]
    # the L2 penalty from the history's kernel norms ||W_i||_2 of the five hidden layers
    norms = [last[f"l2_h{i}"] for i in range(1, 6)]
    assert metrics["train_penalty"] > 0
    assert metrics["train_penalty"] == pytest.approx(LAM * sum(n**2 for n in norms), rel=1e-5)
    total = metrics["train_data_loss"] + metrics["train_penalty"]
    assert metrics["train_total_loss"] == pytest.approx(total, rel=1e-6)


def test_show_compares_a_user_experiment_run_with_its_experiment(user_run, capsys):
    run, folder = user_run
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index(f"config, changed from the defaults of experiment my_exp in {folder}:")
    assert out[at + 1 :][:1] == ["  trainer.epochs: 3 -> 2"]  # my_exp's 3, the run's 2
    shutil.rmtree(folder)  # the user's folder is gone: the plain defaults, said so
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"the plain defaults (experiment my_exp's file is no longer in {folder})" in out
    assert "reg.name: none -> mine" in out and "experiment_name: None -> my_exp" in out


def _complete(line: str, cwd: Path | None = None) -> tuple[set[str], str]:
    env = {"COMP_LINE": line, "COMP_POINT": str(len(line))}
    out = _python("from regexp.cli import main; main(['-sc', 'query=bash'])", cwd, env)
    return set(out.stdout.split()), out.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("work")
    for name in ("outputs", "other", ".hidden", "outputs/2026-01-01"):
        (work / name).mkdir()
    (work / "out.txt").write_text("")
    return work


@pytest.mark.parametrize(
    "line, expected",
    [
        ("regexp r", {"report", "run"}),
        ("regexp ", {c.name for c in COMMANDS}),
        ("regexp report out", {"outputs/"}),  # folders only: not out.txt, nor a parse error
        ("regexp show ", {"other/", "outputs/"}),
        ("regexp compare outputs/ outputs/", {"outputs/2026-01-01/"}),
        ("regexp verify .h", {".hidden/"}),
        ("regexp ls o", {"other/", "outputs/"}),
        ("regexp report --out=ot", {"--out=other/"}),
        ("regexp nope ", set()),
    ],
)
def test_commands_and_paths_complete_without_errors(workdir, line, expected):
    assert _complete(line, workdir) == (expected, "")


def test_run_and_check_complete_hydra_options_from_the_users_folders(recipes):
    l1 = {"reg=l1_activity", "reg=l1_activity_first", "reg=l1_activity_preact"}
    assert _complete("regexp run reg=l1_a") == (l1, "")
    assert _complete("regexp check reg=mi") == (set(), "")
    assert _complete(f"regexp run --config-dir {recipes} reg=mi") == ({"reg=mine"}, "")
    assert _complete(f"regexp run hydra.searchpath=[file://{recipes}] reg=mi") == ({"reg=mine"}, "")
    assert _complete(f"regexp check -cd {recipes} experiment=my") == ({"experiment=my_exp"}, "")
    assert _complete(f"regexp run --config-dir {recipes}/nope reg=mi") == (set(), "")
    assert _complete(f"regexp run --config-dir {recipes.parent}/my_") == ({f"{recipes}/"}, "")


def test_files_complete_where_a_command_takes_files(workdir, monkeypatch):
    from regexp.cli import _paths

    monkeypatch.chdir(workdir)
    assert _paths("o", folders_only=False) == ["other/", "out.txt", "outputs/"]
    assert _paths("o", folders_only=True) == ["other/", "outputs/"]
    assert _paths("missing/x", folders_only=False) == []


def test_bash_completes_through_the_installed_script(workdir, tmp_path):
    """The README's `eval "$(regexp -sc install=bash)"`, then TAB, in a real bash."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "regexp").write_text(f'#!/bin/sh\nexec {sys.executable} -m regexp "$@"\n')
    (bin_ / "regexp").chmod(0o755)
    script = r"""
        eval "$(regexp -sc install=bash)"
        tab() {
            COMP_LINE="$1"; COMP_POINT=${#1}; read -ra COMP_WORDS <<< "$1"
            [[ "$1" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
            hydra_bash_completion; echo "${COMPREPLY[*]}"
        }
        tab "regexp r"; tab "regexp report out"; tab "regexp run trainer.ep"
    """
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=workdir,
                         env=env, timeout=120)  # fmt: skip
    assert out.stdout.splitlines() == ["run report", "outputs/", "trainer.epochs="], out.stderr
    assert out.stderr == ""


def test_the_readme_user_recipes_list_and_check(tmp_path, capsys):
    import re

    readme = (ROOT / "README.md").read_text()
    for name, text in re.findall(r"```yaml\n# (my_recipes/\S+\.yaml)\n(.*?)```", readme, re.S):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    folder = tmp_path / "my_recipes"
    assert sorted(p.name for p in folder.rglob("*.yaml")) == ["mine.yaml", "my_exp.yaml"]
    assert main(["check", "--config-dir", str(folder), "experiment=my_exp"]) == 0
    assert main(["list", "-cd", str(folder)]) == 0
    assert f"  yours, from {folder}: mine" in capsys.readouterr().out.splitlines()


def _command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m regexp ARGS`` in a fresh process: the ``regexp`` command's own exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "regexp", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)  # fmt: skip


def test_the_command_leaves_quickly_with_its_exit_code_and_every_line_written(tmp_path):
    """``regexp`` skips the interpreter's teardown once TensorFlow is loaded
    (``cli.entry``): its exit code, its last lines and the log files must still be
    whole. A completed run exits 0; a diverged one 1, its reason the last line."""
    ok = _command("run", "dataset=moons", "trainer.epochs=2", "hydra.run.dir=ok", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    record = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    said = f"test accuracy {record['test_accuracy']:.4f}"
    assert said in ok.stdout.strip().splitlines()[-1], ok.stdout + ok.stderr  # the console log
    assert said in (tmp_path / "ok" / "regexp.log").read_text().strip().splitlines()[-1]

    bad = _command("run", "dataset=moons", "trainer.epochs=3", "optimizer.lr=1e4",
                   "hydra.run.dir=bad", cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 1, bad.stderr
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("regexp: 1 of 1 runs did not complete: bad diverged"), bad.stderr
    assert json.loads((tmp_path / "bad" / "metrics.json").read_text())["status"] == "diverged"
