"""One damaged run folder never takes the others down: report and ls skip or mark it
with a line naming it; commands about that one folder give one error line and exit 2."""

import json
import shutil

import pytest

from regexp.cli import main

DAMAGE = {
    "truncated_metrics": lambda f: (f / "metrics.json").write_text('{"status": "compl'),
    "list_metrics": lambda f: (f / "metrics.json").write_text("[1, 2]"),
    "broken_config": lambda f: (f / "config.yaml").write_text("seed: [0\nreg: {"),
    "missing_config": lambda f: (f / "config.yaml").unlink(),
    "partial_config": lambda f: (f / "config.yaml").write_text("seed: 0\n"),
    "missing_history": lambda f: (f / "history.csv").unlink(),
    "history_without_loss": lambda f: (f / "history.csv").write_text("epoch,accuracy\n1,0.5\n"),
    "completed_without_results": lambda f: (f / "metrics.json").write_text(
        json.dumps({"status": "completed"})
    ),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["run", "-m", "seed=0,1", "trainer.epochs=1", f"hydra.sweep.dir={root}/good"]) == 0
    source = next((root / "good").glob("0_*"))
    for name, damage in DAMAGE.items():
        shutil.copytree(source, root / "bad" / name)
        damage(root / "bad" / name)
    return root


def test_report_skips_each_damaged_folder_with_a_line_and_reports_the_rest(root, capsys):
    assert main(["report", str(root), "--out", str(root / "report")]) == 0
    out, err = capsys.readouterr()
    skipped = [line for line in err.splitlines() if line.startswith("regexp: skipped")]
    named = {line.split()[2].rstrip(":").split("/")[-1] for line in skipped}
    # a folder without config.yaml still has metrics.json; every damaged one is named once
    assert named == set(DAMAGE), skipped
    assert out.startswith("regexp report: 2 runs in 1 group")


def test_ls_lists_every_folder_and_marks_damaged_records(root, capsys):
    assert main(["ls", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.count("completed") >= 2 and out.count("damaged") == 2  # truncated and list


@pytest.mark.parametrize("name", ["broken_config", "missing_config", "partial_config"])
def test_show_and_verify_of_a_damaged_folder_give_one_line_and_exit_2(root, name, capsys):
    for command in (["show"], ["verify"]):
        assert main([*command, str(root / "bad" / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("regexp: error: "), (command, err)


@pytest.mark.parametrize("name", ["truncated_metrics", "list_metrics", "missing_history"])
def test_verify_of_a_folder_without_a_whole_record_is_one_line(root, name, capsys):
    assert main(["verify", str(root / "bad" / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regexp: error: "), err


def test_show_works_for_a_run_with_its_own_experiment_name(tmp_path, capsys):
    run = tmp_path / "mine"
    args = ["run", "experiment_name=my_study", "trainer.epochs=1", f"hydra.run.dir={run}"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "experiment_name: None -> my_study" in out and "status: completed" in out
