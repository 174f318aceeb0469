"""make reproduce-all's table: its numbers are the runs' numbers, baselines shared."""

import json

import pandas as pd

from regexp.reproduce import experiments, main

SOURCE_EXPERIMENTS = [
    "a2_iris_l1_activity", "b1_loss_fn", "b2_keras_mixed", "b3_l3_custom", "b4_l1_activity",
    "b5_l1_activity_preact", "b6_all", "b7_kl_sparsity",
]  # fmt: skip


def test_every_source_experiment_has_a_config():
    assert experiments() == SOURCE_EXPERIMENTS


def test_table_matches_the_run_folders(tmp_path, capsys):
    rc = main(["--out", str(tmp_path), "--only", "b4_l1_activity,b5_l1_activity_preact",
               "trainer.epochs=1"])  # fmt: skip
    assert rc == 0
    table = pd.read_csv(tmp_path / "reproduce.csv")
    assert list(table["published_test_acc"]) == [0.87, 0.85, 0.85, 0.85]
    # B4 and B5 share one baseline: three runs, not four.
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["b4_l1_activity_l1_activity", "b4_l1_activity_none",
                    "b5_l1_activity_preact_l1_activity_preact"]  # fmt: skip
    for row in table.itertuples():
        m = json.loads((tmp_path / row.run / "metrics.json").read_text())
        assert row.measured_test_acc == round(m["test_accuracy"], 4)
        assert row.test_data_loss == round(m["test_data_loss"], 4)
    assert "| b5_l1_activity_preact | baseline (reg=none) | 0.85 |" in capsys.readouterr().out
    assert (tmp_path / "reproduce.md").read_text().count("\n| b") == 4


def test_unknown_experiment_is_named(capsys):
    assert main(["--only", "b9_nothing"]) == 2
    assert "'b9_nothing' is not an experiment" in capsys.readouterr().err
