"""regexp.runs() and regexp.history() on a real sweep, checked against its files read with
json, yaml and csv; the report's runs.csv and group table against pandas on runs()."""

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from regexp.cli import main
from regexp.errors import UserError
from regexp.report import build
from regexp.results import history, runs

LAMS = (0.001, 0.003, 0.01)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    rc = main(["run", "-m", "reg=l1_activity", "reg.lam=0.001,0.003,0.01", "seed=0,1",
               "trainer.epochs=2", "trainer.quiet=true", f"hydra.sweep.dir={out}"])  # fmt: skip
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    build([str(sweep)], out, baseline="reg.lam=0.001")
    return out


def _leaves(node, prefix=""):
    """Every (dotted key, value) of a nested mapping, written out independently."""
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_runs_has_a_row_per_folder_with_its_config_and_metrics(sweep):
    df = runs(str(sweep))
    folders = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(folders) == 6 and sorted(df["run"]) == sorted(map(str, folders))
    assert list(df.columns[:3]) == ["run", "status", "engine"]
    for _, row in df.iterrows():
        folder = sweep / row["run"].rsplit("/", 1)[-1]
        metrics = json.loads((folder / "metrics.json").read_text())
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert row["status"] == "completed" and row["engine"] == metrics["engine"]
        for key, value in _leaves(config):
            if not isinstance(value, (list, dict)):  # lists are JSON text, {} is "{}"
                assert row[key] == value or (value is None and pd.isna(row[key])), key
        numbers = {k: v for k, v in _leaves(metrics)
                   if isinstance(v, (int, float)) and k not in config}  # fmt: skip
        assert len(numbers) > 40  # train/val/test numbers, data.rows.*, diagnostics.*
        for key, value in numbers.items():
            assert row[key] == pytest.approx(value), key
        assert row["data.rows.train"] == metrics["data"]["rows"]["train"]
        assert "data.features" not in df.columns and "name" not in df.columns  # not numbers
    assert df["reg.lam"].dtype == float and df["test_accuracy"].dtype == float
    assert df["seed"].dtype == np.int64
    by_lam = df.groupby("reg.lam")["test_accuracy"].mean()
    for lam in LAMS:
        chosen = [
            p
            for p in folders
            if yaml.safe_load((p / "config.yaml").read_text())["reg"]["lam"] == lam
        ]
        accs = [json.loads((p / "metrics.json").read_text())["test_accuracy"] for p in chosen]
        assert len(accs) == 2 and by_lam[lam] == pytest.approx(np.mean(accs))


def test_history_is_the_runs_history_csv(sweep):
    folder = sorted(sweep.glob("*/history.csv"))[0].parent
    frame = history(str(folder))
    with open(folder / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert frame.columns[0] == "epoch" and set(frame.columns) == set(rows[0])
    assert list(frame["epoch"]) == [1, 2] == [int(r["epoch"]) for r in rows]
    for column in ("loss", "val_data_loss", "accuracy"):
        assert list(frame[column]) == pytest.approx([float(r[column]) for r in rows])
    with pytest.raises(UserError, match="history.csv"):
        history(sweep)


def test_runs_csv_is_runs_and_the_group_table_is_a_groupby_of_it(sweep, report):
    df = runs(str(sweep), status=None)
    written = pd.read_csv(report / "runs.csv")
    assert list(written.columns) == list(df.columns) and len(written) == 6
    expected = pd.read_csv(io.StringIO(df.to_csv(index=False)))
    pd.testing.assert_frame_equal(written, expected)

    table = pd.read_csv(report / "report.csv")
    # reg.lam is the one key that varies across groups (reg.name does not)
    assert list(table.columns[:3]) == ["group", "reg.lam", "n"]
    assert list(table["group"]) == [f"l1_activity reg.lam={lam}" for lam in LAMS]
    grouped = df.groupby("reg.lam")
    for name in ("test_accuracy", "test_data_loss"):
        assert table[name].to_numpy() == pytest.approx(grouped[name].mean().to_numpy())
    assert list(table["n"]) == list(grouped.size())

    # the comparison beside each group's row is comparisons.csv's row for that group
    comparisons = pd.read_csv(report / "comparisons.csv")
    assert len(comparisons) == 4 and set(comparisons["group"]) == set(table["group"][1:])
    assert (comparisons["p_holm"] != comparisons["p"]).any()  # Holm adjusted something
    by_label = table.set_index("group")
    for _, c in comparisons.iterrows():
        row = by_label.loc[c["group"]]
        assert row["baseline"] == c["baseline"] == "l1_activity reg.lam=0.001"
        m = c["metric"]
        assert row[f"{m}_diff"] == pytest.approx(c["mean_diff"])
        assert row[f"{m}_diff_ci_low"] == pytest.approx(c["ci_low"])
        assert row[f"{m}_diff_ci_high"] == pytest.approx(c["ci_high"])
        assert row[f"{m}_p_holm"] == pytest.approx(c["p_holm"])
        assert row[f"{m}_verdict"] == c["verdict"]
    table = table.set_index("reg.lam")
    base = table.loc[0.001]
    assert base[["baseline", "test_accuracy_diff", "test_accuracy_verdict"]].isna().all()
    # and the paired difference itself, from runs(): same seed, lam 0.01 minus lam 0.001
    paired = df.pivot(index="seed", columns="reg.lam", values="test_accuracy")
    diff = (paired[0.01] - paired[0.001]).mean()
    assert table.loc[0.01, "test_accuracy_diff"] == pytest.approx(diff)

    page = (report / "report.md").read_text()
    runs_table = page.split("## Runs")[1].split("\n## ")[0]
    assert runs_table.count("| completed |") == 6


def test_status_filters_and_broken_folders_never_break_the_call(sweep, tmp_path, capsys):
    root = tmp_path / "s"
    shutil.copytree(sweep, root)
    jobs = sorted(p for p in root.iterdir() if (p / "metrics.json").is_file())
    (jobs[0] / "metrics.json").write_text('{"status": "compl')  # damaged
    (jobs[1] / "metrics.json").unlink()  # unfinished: killed, or still running
    record = json.loads((jobs[2] / "metrics.json").read_text())
    (jobs[2] / "metrics.json").write_text(json.dumps({**record, "status": "diverged"}))
    broken = root / "broken_config"
    shutil.copytree(jobs[3], broken)
    (broken / "config.yaml").write_text("seed: [0\nreg: {")
    waiting = root / "9_l1_activity"  # a fused job not yet trained: its config.yaml alone
    waiting.mkdir()
    shutil.copy(jobs[3] / "config.yaml", waiting / "config.yaml")
    copy = root / "mlflow-artifacts" / "abc" / "artifacts"  # MLflow's copy of a run: no run
    copy.mkdir(parents=True)
    for name in ("config.yaml", "metrics.json"):
        shutil.copy(jobs[3] / name, copy / name)
    capsys.readouterr()

    assert list(runs(str(root))["run"]) == list(map(str, jobs[3:]))
    capsys.readouterr()
    every = runs(str(root), status=None).set_index("run")
    assert dict(every["status"]) == {
        str(jobs[0]): "damaged", str(jobs[1]): "unfinished", str(jobs[2]): "diverged",
        **{str(j): "completed" for j in jobs[3:]}, str(broken): "damaged",
        str(waiting): "unfinished"}  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"regexp: {jobs[0] / 'metrics.json'}: not a readable record (damaged); "
                   "its status is 'damaged'",
                   f"regexp: {broken / 'config.yaml'}: cannot read the run's config (while "
                   "parsing a flow sequence); its status is 'damaged'"]  # fmt: skip
    unfinished = every.loc[str(jobs[1])]
    assert unfinished["reg.lam"] in LAMS and np.isnan(unfinished["test_accuracy"])
    assert sorted(runs(str(root), status=["unfinished", "damaged"])["status"]) == [
        "damaged", "damaged", "unfinished", "unfinished"]  # fmt: skip
    assert "test_accuracy" not in runs(str(root), status="unfinished").columns
    with pytest.raises(
        UserError,
        match=r"status='done' is not accepted; expected one of "
        r"completed, diverged, interrupted, unfinished, damaged",
    ):
        runs(str(root), status="done")  # fmt: skip
    with pytest.raises(UserError, match="matches no file or folder"):
        runs(str(tmp_path / "nothing"))
    glob = runs(f"{root}/*_l1_activity", status=None)  # globs, as in report
    assert len(glob) == 7  # the six jobs and the one not yet trained

    out = tmp_path / "report"
    build([str(root)], out)
    assert len(pd.read_csv(out / "runs.csv")) == 8


def test_import_regexp_gives_the_api_without_tensorflow(sweep):
    code = (
        "import sys, pydoc, regexp\n"
        f"df = regexp.runs({str(sweep)!r})\n"
        "h = regexp.history(df.run[0])\n"
        "assert len(df) == 6 and list(h.epoch) == [1, 2]\n"
        "assert regexp.runs.__module__ == 'regexp.results'\n"
        "text = pydoc.render_doc(regexp)\n"
        "assert 'regexp.runs(*paths, status=' in text and 'regexp.load_model(run' in text\n"
        "try:\n    regexp.nothing\nexcept AttributeError:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
