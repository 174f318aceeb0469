"""The report's verdicts over run folders whose numbers the test chose: zero variance, ties,
repeats that agree and that disagree, equivalence, groups split only by what trains, and
baselines named without ambiguity. Every p-value is checked against scipy's exact
permutation test; nothing trains here."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats as ss

from regexp import rundir
from regexp.cli import main
from regexp.compose import compose
from regexp.keys import BOOKKEEPING, REPORT, flatten
from regexp.report import build, group_runs, load_run, same_value
from regexp.results import runs
from regexp.stats import shaffer
from tests.runfolders import write_run

STEP = 1 / 450  # one test example of 450
SEEDS = 8  # the fewest at which a family of 6 comparisons can reach 0.05: 6 * 2/2^8 < 0.05
BASE_ACC = [0.960, 0.971, 0.966, 0.975, 0.958, 0.969, 0.973, 0.962]
BASE_LOSS = [0.120, 0.131, 0.118, 0.125, 0.140, 0.122, 0.128, 0.119]
# per arm: (overrides, accuracy differences, loss differences), seed by seed
ARMS = {
    "l2_kernel": (["reg=l2_kernel"], [2 * STEP, 3 * STEP, 2 * STEP, 4 * STEP, 2 * STEP,
                                      3 * STEP, 2 * STEP, 5 * STEP],  # every seed better
                  [-0.02, -0.015, -0.03, -0.02, -0.025, -0.018, -0.022, -0.02]),
    "l1_activity": (["reg=l1_activity"], [0, STEP, -STEP, 0, STEP, 0, -STEP, 0],  # ties, zeros
                    [0.001, -0.001, 0.0005, -0.0005, 0.001, 0.0, -0.001, 0.0005]),
    "dropout": (["reg=dropout"], [0.02, -0.03, 0.01, -0.01, 0.03, -0.02, 0.0, 0.015],
                [0.03, -0.04, 0.02, -0.01, 0.05, -0.03, 0.01, -0.02]),
}  # fmt: skip


def _write(folder, cfg, accuracy, loss, rows=450):
    """A completed run of ``cfg`` whose test numbers are the ones given."""
    write_run(folder, cfg, accuracy, 4, np.random.default_rng(0))
    record = rundir.read_metrics(folder)
    record.update(test_accuracy=accuracy, test_data_loss=loss)
    record["data"]["rows"] = {"train": 1000, "val": 300, "test": rows}
    rundir.write_metrics(folder, record)
    return folder


def _sweep(root, arms, seeds):
    job = 0
    for name, (overrides, acc, loss) in arms.items():
        cfg = compose(*overrides, "model.depth=2")
        for seed in range(seeds):
            cfg.seed = seed
            _write(root / f"{job}_{name}", cfg, BASE_ACC[seed] + acc[seed],
                   BASE_LOSS[seed] + loss[seed])  # fmt: skip
            job += 1
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    arms = {"none": (["reg=none"], [0] * SEEDS, [0] * SEEDS), **ARMS}
    return _sweep(tmp_path_factory.mktemp("chosen"), arms, SEEDS)


def _scipy(d, alternative="two-sided"):
    return ss.permutation_test((np.asarray(d, dtype=float),), np.mean,
                               permutation_type="samples", n_resamples=np.inf,
                               alternative=alternative).pvalue  # fmt: skip


def test_verdicts_and_their_p_values_equal_an_independent_computation(sweep, tmp_path):
    build([str(sweep)], tmp_path, baseline="reg.name=none")
    table = pd.read_csv(tmp_path / "comparisons.csv")
    assert len(table) == 6
    rows = {(r["group"].split()[0], r["metric"]): r for r in table.to_dict("records")}
    delta = {"test_accuracy": 0.005, "test_data_loss": 0.05 * np.mean(BASE_LOSS)}
    p, p_eq = [], []
    for arm, (_, acc, loss) in ARMS.items():
        for metric, d in (("test_accuracy", acc), ("test_data_loss", loss)):
            row = rows[arm, metric]
            assert row["pairs"] == SEEDS and row["test"] == "sign-flip, exact"
            assert row["min_effect"] == pytest.approx(delta[metric])
            assert row["p"] == pytest.approx(_scipy(d), abs=1e-9)
            eq = max(_scipy(np.subtract(d, delta[metric]), "less"),
                     _scipy(np.add(d, delta[metric]), "greater"))  # fmt: skip
            assert row["p_equivalence"] == pytest.approx(eq, abs=1e-9)
            p.append(row["p"])
            p_eq.append(row["p_equivalence"])
    # the family: all six comparisons, both tests of each (at most one true per comparison)
    adjusted = shaffer(p + p_eq, [*range(6), *range(6)])
    got = [rows[a, m]["p_holm"] for a in ARMS for m in ("test_accuracy", "test_data_loss")]
    assert got == pytest.approx(adjusted[:6])
    verdicts = {k: r["verdict"] for k, r in rows.items()}
    assert verdicts == {
        ("l2_kernel", "test_accuracy"): "better",  # 8 of 8 seeds: p = 2/256, x6 = 0.047
        ("l2_kernel", "test_data_loss"): "better",  # lower loss
        ("l1_activity", "test_accuracy"): "equivalent",  # within one example, ties and zeros
        ("l1_activity", "test_data_loss"): "equivalent",
        ("dropout", "test_accuracy"): "inconclusive",
        ("dropout", "test_data_loss"): "inconclusive",
    }
    note = rows["dropout", "test_accuracy"]["note"]
    assert note.startswith("detects ±") and "needs" in note
    # the group table carries each verdict beside its row, as words
    report = pd.read_csv(tmp_path / "report.csv")
    l2 = report[report["group"].str.startswith("l2_kernel")].iloc[0]
    assert l2["test_accuracy_verdict"] == "better"
    page = (tmp_path / "report.md").read_text()
    assert "*better*" not in page and "Shaffer" in page
    assert "every comparison of this report (6 comparisons" in page


def test_two_seeds_of_equal_differences_give_no_verdict(tmp_path):
    arms = {"none": (["reg=none"], [0, 0], [0, 0]),
            "l2_kernel": (["reg=l2_kernel"], [STEP, STEP], [-0.01, -0.01])}  # fmt: skip
    sweep = _sweep(tmp_path / "two", arms, 2)
    build([str(sweep)], tmp_path / "out", baseline="reg.name=none")
    table = pd.read_csv(tmp_path / "out" / "comparisons.csv").set_index("metric")
    acc = table.loc["test_accuracy"]
    assert acc["mean_diff"] == pytest.approx(STEP) and acc["ci_low"] == pytest.approx(STEP)
    assert acc["p"] == 0.5 and acc["p_holm"] == 1.0  # never 0
    assert acc["verdict"] == "too few seeds"
    assert acc["note"] == ("n=2: too few seeds for a verdict at 0.05 (Holm over 2 comparisons; "
                           "6 for one alone); at least 7 are needed")  # fmt: skip


def test_repeats_are_named_and_disagreeing_ones_loudly(sweep, tmp_path, capsys):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    shutil.copytree(copy / "0_none", copy / "90_none")  # the same run twice
    doc = build([str(copy)], tmp_path / "agree", baseline="reg.name=none")
    assert doc.title == f"regexp report: {4 * SEEDS} runs in 4 groups"
    page = (tmp_path / "agree" / "report.md").read_text()
    assert "1 run repeat the recipe, seed and split of another run and count once" in page
    assert "their numbers equal" in page

    shutil.copytree(copy / "1_none", copy / "91_none")
    record = rundir.read_metrics(copy / "91_none")
    record["test_accuracy"] += STEP
    rundir.write_metrics(copy / "91_none", record)
    build([str(copy)], tmp_path / "disagree", baseline="reg.name=none")
    err = capsys.readouterr().err
    assert f"repeats disagree: {copy / '91_none'} repeats {copy / '1_none'}" in err
    assert "test_accuracy" in err and f"only {copy / '1_none'} counts" in err
    page = (tmp_path / "disagree" / "report.md").read_text()
    assert "2 runs repeat" in page and "1 with numbers that DISAGREE" in page


# Every key outside the groups' own schemas, and the keys of trainer and tracking, is
# either bookkeeping or changes what trains; a key added later must be put on one side.
TRAINS = {"seed", "trainer.epochs", "trainer.batch_size", "trainer.shuffle",
          "trainer.early_stopping.monitor", "trainer.early_stopping.patience",
          "trainer.early_stopping.min_delta", "trainer.early_stopping.restore_best"}  # fmt: skip
OTHER_VALUE = {"resume": "outputs/elsewhere", "experiment_name": "renamed",
               "published": {"test_acc": 0.5}, "trainer.engine": "keras",
               "trainer.threads": 2, "trainer.quiet": True, "trainer.tensorboard": True,
               "tracking": {"backend": "mlflow", "uri": "sqlite:///x.db",
                            "experiment": "x", "artifacts": "a"}}  # fmt: skip


def test_every_key_is_bookkeeping_or_trains():
    cfg = compose("+tracking=mlflow", "trainer=early_stopping")
    keys = {k for k in flatten(OmegaConf.to_container(cfg))
            if k.split(".")[0] not in ("dataset", "model", "reg", "optimizer")}  # fmt: skip
    bookkeeping = {k for k in keys if any(k == b or k.startswith(f"{b}.") for b in BOOKKEEPING)}
    assert keys - bookkeeping == TRAINS
    assert set(OTHER_VALUE) == set(BOOKKEEPING) and set(BOOKKEEPING) <= set(REPORT)


@pytest.mark.parametrize("key", sorted(OTHER_VALUE))
def test_bookkeeping_never_splits_a_group(sweep, tmp_path, key):
    for folder in sorted(sweep.glob("*_none")):
        shutil.copytree(folder, tmp_path / folder.name)
    changed = sorted(tmp_path.iterdir())[: SEEDS // 2]
    for folder in changed:
        cfg = OmegaConf.load(folder / "config.yaml")
        OmegaConf.update(cfg, key, OTHER_VALUE[key], force_add=True)
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    groups = group_runs([load_run(p) for p in rundir.find_runs([str(tmp_path)])])
    assert [len(g.runs) for g in groups] == [SEEDS]
    # and a key that does change the training splits it: the test can fail
    cfg = OmegaConf.load(changed[0] / "config.yaml")
    cfg.trainer.epochs = 999
    (changed[0] / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    groups = group_runs([load_run(p) for p in rundir.find_runs([str(tmp_path)])])
    assert sorted(len(g.runs) for g in groups) == [1, SEEDS - 1]


def test_a_baseline_matching_several_groups_is_one_line_naming_them(tmp_path, capsys):
    arms = {"none": (["reg=none"], [0, 0], [0, 0]),
            "l1_a": (["reg=l1_activity", "reg.lam=0.001"], [0, 0], [0, 0]),
            "l1_b": (["reg=l1_activity", "reg.lam=0.01"], [0, 0], [0, 0])}  # fmt: skip
    sweep = _sweep(tmp_path / "lams", arms, 2)
    assert main(["report", str(sweep), "--baseline", "reg.name=l1_activity",
                 "--out", str(tmp_path / "r")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches 2 groups" in err[0]
    assert "'l1_activity reg.lam=0.001'" in err[0] and "'l1_activity reg.lam=0.01'" in err[0]
    # named in full, it is one group; 1e-3 is 0.001
    assert main(["report", str(sweep), "--baseline", "reg.name=l1_activity reg.lam=1e-3",
                 "--out", str(tmp_path / "r")]) == 0  # fmt: skip
    table = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    assert set(table["baseline"]) == {"l1_activity reg.lam=0.001"}
    assert set(table["group"]) == {"none", "l1_activity reg.lam=0.01"}
    assert "written to" in capsys.readouterr().out
    assert same_value(0.001, "1e-3") and not same_value(0.001, "0.01")
    assert same_value(None, "null") and same_value(True, "true") and same_value("a", "a")


def test_bad_min_effects_are_one_line(sweep, tmp_path, capsys):
    for bad in ("test_acc=0.01", "test_accuracy=-1", "test_accuracy=x", "test_accuracy"):
        assert main(["report", str(sweep), "--baseline", "reg.name=none", "--min-effect", bad,
                     "--out", str(tmp_path)]) == 2  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--min-effect {bad!r}" in err[0] and "test_accuracy" in err[0]
    assert main(["report", str(sweep), "--baseline", "reg.name=none", "--min-effect",
                 "test_accuracy=0.02", "--min-effect", "test_data_loss=10%",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    table = pd.read_csv(tmp_path / "comparisons.csv").set_index(["group", "metric"])
    assert table.loc[("dropout reg.dropout=0.2", "test_accuracy"), "min_effect"] == 0.02
    loss = table.loc[("dropout reg.dropout=0.2", "test_data_loss"), "min_effect"]
    assert loss == pytest.approx(0.1 * np.mean(BASE_LOSS))
    out = capsys.readouterr().out
    assert "comparisons.csv" in out


def _regression_run(folder, cfg, r2):
    rundir.write_config(folder, cfg)
    rundir.write_history(folder, {"loss": [1.0, 0.5], "data_loss": [1.0, 0.5],
                                  "val_loss": [1.0, 0.6], "val_data_loss": [1.0, 0.6],
                                  "r2": [0.1, 0.5], "val_r2": [0.1, 0.4],
                                  "mae": [1.0, 0.6], "val_mae": [1.0, 0.7]})  # fmt: skip
    rundir.write_metrics(folder, {
        "status": "completed", "name": str(cfg.reg.name), "seed": cfg.seed, "epochs_run": 2,
        "data": {"name": "regression", "task": "regression", "rows": {"test": 50}},
        "train_r2": 0.5, "val_r2": 0.4, "test_r2": r2, "test_mae": 0.7, "test_data_loss": 0.6,
        "train_data_loss": 0.5, "val_data_loss": 0.6})  # fmt: skip


def test_mixed_tasks_compare_like_with_like(sweep, tmp_path):
    mixed = tmp_path / "mixed"
    for folder in sorted(sweep.glob("*_none"))[:2]:
        shutil.copytree(folder, mixed / folder.name)
    for folder in sorted(sweep.glob("*_l2_kernel"))[:2]:
        shutil.copytree(folder, mixed / folder.name)
    for reg in ("none", "l2_kernel"):
        cfg = compose("dataset=regression", f"reg={reg}", "model.depth=2")
        for seed in (0, 1):
            cfg.seed = seed
            _regression_run(mixed / f"r{seed}_{reg}", cfg, 0.8 + 0.01 * seed)
    assert main(["report", str(mixed), "--baseline", "dataset.name=blobs",
                 "--out", str(tmp_path / "r")]) == 0  # fmt: skip
    # both blobs groups are baselines, and the regression groups have no baseline of their
    # task: no comparison is made, and no KeyError
    assert (tmp_path / "r" / "comparisons.csv").read_text().strip() == ""
    assert main(["report", str(mixed), "--baseline", "reg.name=none",
                 "--out", str(tmp_path / "r2")]) == 0  # fmt: skip
    table = pd.read_csv(tmp_path / "r2" / "comparisons.csv")
    pairs = {(r["group"], r["baseline"]) for r in table.to_dict("records")}
    assert len(pairs) == 2  # each task's l2_kernel against its own none
    assert set(table["metric"]) == {"test_accuracy", "test_data_loss", "test_r2", "test_mae"}
    assert json.loads((mixed / "r0_none" / "metrics.json").read_text())["data"]["task"]


def test_replicate_trains_new_seeds_and_checks_each_verdict_on_them(tmp_path, capsys):
    """Discovery numbers chosen to claim better, and a real replication of B4 (2 epochs):
    its verdicts are what scipy says of the replication folders' numbers."""
    seeds = 7  # the fewest at which a family of 2 comparisons can reach 0.05
    root = tmp_path / "sweep"
    job = 0
    for reg, gain in (("none", 0.0), ("l1_activity", 0.05)):
        cfg = compose("experiment=b4_l1_activity", f"reg={reg}", "trainer.epochs=2")
        for seed in range(seeds):
            cfg.seed = seed
            _write(root / f"{job}_{reg}", cfg, BASE_ACC[seed] + gain,
                   BASE_LOSS[seed] - gain, rows=75)  # fmt: skip
            job += 1
    out = root / "report"  # the default: inside the sweep, beside its runs
    args = ["report", str(root), "--baseline", "reg.name=none", "--replicate"]
    assert main(args) == 0
    assert f"regexp report: {2 * seeds} runs in 2 groups" in capsys.readouterr().out
    record = json.loads((out / "replication" / "replication.json").read_text())
    assert record["seeds"] == list(range(seeds, 2 * seeds))  # disjoint from 0..6
    table = pd.read_csv(out / "comparisons.csv").set_index("metric")
    found = {}
    for folder in sorted((out / "replication").glob("*/seed_*")):
        cfg = OmegaConf.load(folder / "config.yaml")
        assert cfg.dataset.split_seed == cfg.seed  # each seed draws its own split
        assert cfg.trainer.epochs == 2
        found[str(cfg.reg.name), int(cfg.seed)] = rundir.read_metrics(folder)
    assert len(found) == 2 * seeds
    p = []
    for metric, alternative in (("test_accuracy", "greater"), ("test_data_loss", "less")):
        row = table.loc[metric]
        assert row["verdict"].split(",")[0] == "better"
        d = [found["l1_activity", s][metric] - found["none", s][metric]
             for s in range(seeds, 2 * seeds)]  # fmt: skip
        assert row["replication_pairs"] == seeds
        assert row["replication_p"] == pytest.approx(_scipy(d, alternative), abs=1e-9)
        p.append(row["replication_p"])
    holm = sorted(p)
    adjusted = {p.index(holm[0]): min(1, 2 * holm[0])}
    adjusted[1 - p.index(holm[0])] = max(adjusted[p.index(holm[0])], holm[1])
    for i, metric in enumerate(("test_accuracy", "test_data_loss")):
        row = table.loc[metric]
        assert row["replication_p_holm"] == pytest.approx(adjusted[i])
        expected = "replicated" if adjusted[i] < 0.05 else "not replicated"
        assert row["replication"] == expected and row["verdict"] == f"better, {expected}"
    group_table = pd.read_csv(out / "report.csv")
    assert group_table["test_accuracy_verdict"].dropna().str.contains("replicated").all()
    # again: the completed replication is kept, not trained twice, and never counted
    stamps = {f: f.stat().st_mtime_ns for f in (out / "replication").rglob("metrics.json")}
    assert main(args) == 0
    assert f"regexp report: {2 * seeds} runs in 2 groups" in capsys.readouterr().out
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps
    # runs() and ls see the replication only when it is named
    assert len(runs(str(root))) == 2 * seeds
    assert len(runs(str(out / "replication"))) == 2 * seeds
    found = rundir.find_runs([str(root)], unfinished=True)  # what ls, runs() and report read
    assert len(found) == 2 * seeds and not any("replication" in str(f) for f in found)
