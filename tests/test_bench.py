"""make bench's arithmetic: the FLOPs it counts, the groups it expects, its sections.
(No timings are asserted: they depend on the machine and its load.)"""

from collections import Counter

import pytest

from regexp import bench


def test_training_flops_counts_a_tiny_network_by_hand():
    # Dense 3 -> 4 -> 2; 10 training rows (batches of 4, 4, 2), 5 validation rows,
    # 2 epochs, 3 members, validated once an epoch.
    # forward, a row: 3*4 + 4*2 = 20 multiply-adds
    # backward, a row: kernel gradients 12 + 8 = 20, input gradients 8 (the second
    #   layer's only: the data need none) -> 28
    # an epoch: 10 * (20 + 28) + 5 * 20 = 580 multiply-adds
    # 3 members x 2 epochs x 580 = 3480 multiply-adds = 6960 FLOPs
    assert bench.training_flops([(3, 4), (4, 2)], 10, 5, 2, members=3) == 6960


def test_training_flops_counts_each_validation_pass():
    # a second forward pass over the 5 validation rows: 5 * 20 more a member-epoch
    one = bench.training_flops([(3, 4), (4, 2)], 10, 5, 2, members=3)
    two = bench.training_flops([(3, 4), (4, 2)], 10, 5, 2, members=3, val_passes=2)
    assert two - one == 2 * 3 * 2 * 5 * 20


def test_training_flops_of_one_layer_has_no_input_gradient():
    # Dense 2 -> 1, one row, one epoch: forward 2, kernel gradient 2, no input gradient
    assert bench.training_flops([(2, 1)], 1, 0, 1) == 2 * (2 + 2)


def test_group_sizes_cut_fusing_jobs_into_groups_of_the_largest_size():
    assert bench.group_sizes(1000, 100) == Counter({100: 1000})
    assert bench.group_sizes(30, 100) == Counter({30: 30})
    assert bench.group_sizes(250, 100) == Counter({100: 200, 50: 50})


def test_sections_only_and_skip():
    assert bench._sections(None, None) == list(bench.SECTIONS)
    assert bench._sections("single,engines", None) == ["engines", "single"]
    assert bench._sections(None, "launchers,commands") == [
        "engines", "sweep50", "sweep1000", "single", "flops"]  # fmt: skip
    with pytest.raises(SystemExit, match="unknown section sweep"):
        bench._sections("sweep", None)


def test_targets_say_met_not_met_and_not_measured():
    results = {"sweep50": [{}, {"speedup_vs_fit": 120.0}],
               "single": [{"speedup_vs_keras": 2.5}, {}]}  # fmt: skip
    goals = {g["what"].split(" (")[0]: g for g in bench.targets(results, seeds=100)}
    assert goals["target: 50-job sweep"]["met"] is True
    assert goals["target: 1000-job sweep"]["measured"] is None
    single = next(g for name, g in goals.items() if "regexp run" in name)
    assert single["met"] is False
    lines = bench.target_lines(list(goals.values()), bench.EPOCHS)
    assert lines[0] == "targets"
    assert any(line.endswith("120.0x (target 100x): met") for line in lines)
    assert any(line.endswith("2.5x (target 3x): NOT met") for line in lines)
    assert any(line.endswith("not measured") for line in lines)
