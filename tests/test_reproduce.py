"""make reproduce-all: the verdict rule, shared baselines, and a report that matches its runs."""

import json

import numpy as np
import pandas as pd
import pytest

from regexp.reproduce import claim_verdict, experiments, main

SOURCE_EXPERIMENTS = [
    "a2_iris_l1_activity", "b1_loss_fn", "b2_keras_mixed", "b3_l3_custom", "b4_l1_activity",
    "b5_l1_activity_preact", "b6_all", "b7_kl_sparsity",
]  # fmt: skip
GAIN = {"test_acc": 0.87, "baseline_test_acc": 0.85}  # a claimed gain of 0.02
SAME = {"test_acc": 0.85, "baseline_test_acc": 0.85}  # a claim of no change
LEVEL = {"test_acc": 0.84}  # no published baseline


def test_every_source_experiment_has_a_config():
    assert experiments() == SOURCE_EXPERIMENTS


NAN = float("nan")


@pytest.mark.parametrize(
    "pub, found, below, level, expected",
    [
        (GAIN, "better", NAN, None, "reproduced"),
        (GAIN, "better, not replicated", NAN, None, "reproduced"),  # replication: own column
        (GAIN, "inconclusive", 0.01, None, "not reproduced"),  # a gain of 0.02 is ruled out
        (GAIN, "equivalent", 0.2, None, "not reproduced"),
        (GAIN, "worse", 0.2, None, "not reproduced"),
        (GAIN, "inconclusive", 0.05, None, "inconclusive"),  # the level is strict
        (GAIN, "too few seeds", 0.5, None, "inconclusive"),
        (SAME, "equivalent", NAN, None, "reproduced"),
        (SAME, "better", NAN, None, "not reproduced"),
        (SAME, "inconclusive", NAN, None, "inconclusive"),
        (LEVEL, "inconclusive", NAN, (0.83, 0.82, 0.845), "reproduced"),
        (LEVEL, "inconclusive", NAN, (0.80, 0.79, 0.81), "not reproduced"),
        (LEVEL, "too few seeds", NAN, (0.83, NAN, NAN), "inconclusive (one seed)"),
    ],
)
def test_claim_verdict_rule(pub, found, below, level, expected):
    assert claim_verdict(pub, {"verdict": found, "p_below_gain": below}, level) == expected


def test_report_matches_its_runs(tmp_path, capsys):
    rc = main(["--seeds", "2", "--only", "b4_l1_activity,b5_l1_activity_preact",
               "--out", str(tmp_path), "trainer.epochs=2"])  # fmt: skip
    assert rc == 0
    runs = sorted(p.parent.relative_to(tmp_path / "runs").as_posix()
                  for p in (tmp_path / "runs").rglob("metrics.json"))  # fmt: skip
    # B4 and B5 share their baseline: 3 recipes x (2 + 2 replication) seeds, not 4 x 4
    assert runs == [f"{r}/seed_{s}" for r in ("b4_l1_activity_l1_activity", "b4_l1_activity_none",
                    "b5_l1_activity_preact_l1_activity_preact") for s in range(4)]  # fmt: skip
    record = {r: json.loads((tmp_path / "runs" / r / "metrics.json").read_text()) for r in runs}
    configs = {r: (tmp_path / "runs" / r / "config.yaml").read_text() for r in runs}
    assert [m["seed"] for m in list(record.values())[:4]] == [0, 1, 2, 3]
    assert all(f"split_seed: {s}" in configs[f"b4_l1_activity_none/seed_{s}"] for s in range(4))
    table = pd.read_csv(tmp_path / "report.csv").set_index("experiment")
    # the verdict comes from seeds 0 and 1 alone; 2 and 3 only check it
    reg = [record[f"b4_l1_activity_l1_activity/seed_{s}"]["test_accuracy"] for s in (0, 1)]
    base = [record[f"b4_l1_activity_none/seed_{s}"]["test_accuracy"] for s in (0, 1)]
    row = table.loc["b4_l1_activity"]
    assert row["test_acc"] == pytest.approx(np.mean(reg))
    assert row["diff"] == pytest.approx(np.mean(np.subtract(reg, base)))
    assert table.loc["b5_l1_activity_preact", "baseline_acc"] == pytest.approx(np.mean(base))
    # two seeds can give no verdict: 2 / 2^2 = 0.5 is the smallest p
    assert row["accuracy_verdict"] == "too few seeds" and "at least 7" in row["note"]
    page = (tmp_path / "report.md").read_text()
    assert "Verdict rule" in page and "## b5_l1_activity_preact" in page and "*" not in page
    assert (tmp_path / "figures" / "b4_l1_activity_loss.png").is_file()
    assert "b4_l1_activity" in capsys.readouterr().out


def test_unknown_experiment_is_named(capsys):
    assert main(["--only", "b9_nothing"]) == 2
    assert "'b9_nothing' is not an experiment" in capsys.readouterr().err


DIGITS_ARMS = ["digits_dropout", "digits_early_stopping", "digits_l1_activity",
               "digits_l2_kernel", "digits_max_norm_dropout", "digits_none",
               "digits_weight_decay"]  # fmt: skip


def test_the_digits_study_is_a_study_and_its_arms_sweep_by_glob():
    from regexp.compose import precheck
    from regexp.reproduce import studies

    assert studies() == {"digits": DIGITS_ARMS}
    assert precheck(["-m", "experiment=glob(digits_*)", "seed=0,1"]).multirun


def test_a_study_reports_paired_effects_and_verdicts_with_their_replication(tmp_path, capsys):
    rc = main(["--seeds", "2", "--only", "digits", "--out", str(tmp_path), "trainer.epochs=2"])
    assert rc == 0
    table = pd.read_csv(tmp_path / "study_digits.csv").set_index("arm")
    assert sorted(table.index) == DIGITS_ARMS

    def accuracies(arm):  # seeds 0 and 1 decide; 2 and 3 replicate
        found = [tmp_path / "runs" / arm / f"seed_{s}" / "metrics.json" for s in (0, 1)]
        return [json.loads(p.read_text())["test_accuracy"] for p in found]

    base = accuracies("digits_none")
    assert np.isnan(table.loc["digits_none", "diff"])
    for arm in set(DIGITS_ARMS) - {"digits_none"}:
        mine = accuracies(arm)
        assert table.loc[arm, "n"] == 2
        assert table.loc[arm, "test_accuracy"] == pytest.approx(np.mean(mine))
        assert table.loc[arm, "diff"] == pytest.approx(np.mean(np.subtract(mine, base)))
        # two seeds: no verdict, however equal the differences (never p = 0)
        assert table.loc[arm, "verdict"] == "too few seeds"
        assert table.loc[arm, "p_holm"] >= 0.5
    page = (tmp_path / "report.md").read_text()
    assert "## Study digits: no published claim" in page
    assert "reproduced" not in page and "Verdict rule" not in page
    assert "the study's 12 comparisons" in page
