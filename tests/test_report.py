"""regexp report on real run folders: the table's numbers, not just its files."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regexp.cli import main
from regexp.errors import UserError
from regexp.report import build


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    rc = main(["run", "-m", "experiment=b4_l1_activity", "reg=l1_activity,none", "seed=0,1,2",
               "trainer.epochs=3", f"hydra.sweep.dir={out}"])  # fmt: skip
    assert rc == 0
    return out


def _metrics(sweep, reg):
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    return {m["seed"]: m for m in runs if m["name"].endswith(f"_{reg}")}


def test_table_numbers_are_the_runs_numbers(sweep, tmp_path):
    doc = build([str(sweep)], tmp_path, baseline="reg.name=none")
    table = pd.read_csv(tmp_path / "report.csv").set_index("group")
    # the page's table of runs leaves reg.lam empty for none's runs too, as their group's row
    per_run = next(b[1] for b in doc.blocks if b[0] == "table" and "seed" in b[1])
    lams = dict(zip(per_run["group"], per_run["reg.lam"], strict=True))
    assert lams["l1_activity reg.lam=0.01"] == 0.01 and pd.isna(lams["none"])
    assert list(table.index) == ["l1_activity reg.lam=0.01", "none"]
    assert list(table["n"]) == [3, 3]
    # the keys of the labels as columns; none ignores reg.lam, so its cell is empty
    assert list(table.columns[:3]) == ["reg.name", "reg.lam", "n"]
    # each compared number is followed by its comparison and verdict, so they sit together
    at = list(table.columns).index("test_accuracy")
    assert list(table.columns[at : at + 8]) == [
        "test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high", "test_accuracy_diff",
        "test_accuracy_diff_ci_low", "test_accuracy_diff_ci_high", "test_accuracy_p_holm",
        "test_accuracy_verdict"]  # fmt: skip
    assert list(table["reg.name"]) == ["l1_activity", "none"]
    assert table["reg.lam"].iloc[0] == 0.01 and pd.isna(table["reg.lam"].iloc[1])
    reg = _metrics(sweep, "l1_activity")
    acc = np.array([reg[s]["test_accuracy"] for s in (0, 1, 2)])
    row = table.loc["l1_activity reg.lam=0.01"]
    half = stats.t.ppf(0.975, 2) * acc.std(ddof=1) / math.sqrt(3)
    assert row["test_accuracy"] == pytest.approx(acc.mean())
    assert row["test_accuracy_ci_low"] == pytest.approx(acc.mean() - half)
    gap = [reg[s]["train_accuracy"] - reg[s]["val_accuracy"] for s in (0, 1, 2)]
    assert row["gap"] == pytest.approx(np.mean(gap))
    best = [pd.read_csv(p.parent / "history.csv")["val_data_loss"].min()
            for p in sweep.glob("*_l1_activity/metrics.json")]  # fmt: skip
    assert row["best_val_data_loss"] == pytest.approx(np.mean(best))

    comparisons = pd.read_csv(tmp_path / "comparisons.csv")
    loss = comparisons[comparisons["metric"] == "test_data_loss"].iloc[0]
    base = _metrics(sweep, "none")
    d = [reg[s]["test_data_loss"] - base[s]["test_data_loss"] for s in (0, 1, 2)]
    assert loss["pairs"] == 3 and loss["mean_diff"] == pytest.approx(np.mean(d))
    assert loss["p_t"] == pytest.approx(stats.ttest_rel(
        [reg[s]["test_data_loss"] for s in (0, 1, 2)],
        [base[s]["test_data_loss"] for s in (0, 1, 2)]).pvalue)  # fmt: skip


def test_report_files_are_self_contained(sweep, tmp_path):
    assert main(["report", str(sweep), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and 'src="http' not in page
    assert "![" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000


def test_a_path_without_runs_is_an_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no runs under"):
        build([str(tmp_path)], tmp_path / "out")
    assert main(["report", str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_report_does_not_import_tensorflow(sweep, tmp_path):
    import subprocess
    import sys

    code = ("import sys; from regexp.cli import main; "
            f"rc = main(['report', {str(sweep)!r}, '--out', {str(tmp_path)!r}]); "
            "print('TF' if 'tensorflow' in sys.modules else 'NO_TF'); sys.exit(rc)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "NO_TF" in out.stdout


def test_a_baseline_is_never_paired_with_a_group_of_another_network(tmp_path):
    """Both groups differ from each other only in the network: no comparison is made."""
    from regexp.report import compare, group_runs, load_run
    from regexp.rundir import find_runs

    for reg, depth in (("none", 2), ("l1_activity", 3)):
        assert main(["run", "-m", f"reg={reg}", f"model.depth={depth}", "seed=0,1",
                     "trainer.epochs=1", f"hydra.sweep.dir={tmp_path}/{reg}"]) == 0  # fmt: skip
    groups = group_runs([load_run(p) for p in find_runs([str(tmp_path)])])
    assert len(groups) == 2
    assert compare(groups, "reg.name=none").empty


def _run(seed, reg, plans, **config):
    from pathlib import Path

    from regexp.report import Run

    flat = {"seed": seed, "dataset.name": "digits", "model.width": 8, "optimizer.name": "adam",
            "reg.name": reg, "reg.lam": 0.0, **config}  # fmt: skip
    rest = {k: v for k, v in flat.items() if not k.startswith("reg.") and k != "seed"}
    recipe = json.dumps({"rest": rest, "mode": "layers", "plans": plans}, sort_keys=True)
    return Run(Path(f"/runs/{reg}{seed}"), flat, {}, pd.DataFrame(), recipe)


def test_labels_name_what_tells_groups_apart_and_arms_find_their_baseline():
    from regexp.report import compare, find_baseline, group_runs

    runs = []
    for seed in (0, 1):
        runs.append(_run(seed, "none", [{"name": "h1"}]))
        runs.append(_run(seed, "weight_decay", [{"name": "h1"}], **{
            "optimizer.name": "adamw", "optimizer.weight_decay": 0.1}))  # fmt: skip
        for rate in (0.2, 0.5):
            runs.append(_run(seed, "dropout", [{"name": "h1", "dropout": {"rate": rate}}],
                             **{"reg.dropout": rate}))  # fmt: skip
        runs.append(_run(seed, "l1", [{"name": "h1", "activity": {"kind": "l1", "lam": 0.01}}],
                         **{"reg.lam": 0.01}))  # fmt: skip
    groups = {g.label: g for g in group_runs(runs)}
    assert sorted(groups) == ["dropout reg.dropout=0.2", "dropout reg.dropout=0.5",
                              "l1 reg.lam=0.01", "none", "weight_decay"]  # fmt: skip
    bases = [groups["none"]]
    # weight decay differs from none in its optimizer, its treatment: paired all the same
    assert find_baseline(groups["weight_decay"], bases, "reg.name") == [groups["none"]]
    other_data = _run(0, "x", [{"name": "h1"}], **{"dataset.name": "iris"})
    (foreign,) = group_runs([other_data])
    assert find_baseline(foreign, bases, "reg.name") == []  # never across data
    for g in groups.values():
        for r in g.runs:
            r.metrics.update(test_accuracy=0.9, test_data_loss=0.1)
    table = compare(list(groups.values()), "reg.name=none")
    assert set(table["group"]) == set(groups) - {"none"}
