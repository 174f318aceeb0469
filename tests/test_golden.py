"""The numbers of a fixed set of runs, recorded from main before the single-pipeline
restructure (``tests/golden/record.py``), must come out bit for bit the same."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.golden.record import compute

GOLDEN = Path(__file__).parent / "golden" / "golden.json"


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_the_golden_runs_give_the_recorded_numbers_bit_for_bit(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    now = compute(tmp_path)
    assert sorted(now) == sorted(golden)
    differences = []
    for run, recorded in golden.items():
        for key, value in recorded["metrics"].items():
            if not _same(now[run]["metrics"].get(key), value):
                differences.append(
                    f"{run} metrics {key}: {value!r} -> {now[run]['metrics'].get(key)!r}"
                )
        assert sorted(now[run]["history"]) == sorted(recorded["history"]), run
        for column, values in recorded["history"].items():
            for epoch, (x, y) in enumerate(zip(values, now[run]["history"][column], strict=True)):
                if not _same(x, y):
                    differences.append(f"{run} history {column} epoch {epoch + 1}: {x!r} -> {y!r}")
                    break
    assert not differences, "\n".join(differences[:20])
