"""The numbers of a fixed set of runs, recorded from main before the single-pipeline
restructure (``tests/golden/record.py``), must come out bit for bit the same.

oneDNN's kernels, and so the last bits, differ by CPU: ``golden.json`` holds one record
per kind of machine, each made by the old code on that machine, and the numbers now
must equal one of them in every bit (a change of the code would have to reproduce
another CPU's rounding exactly to pass). On a kind of machine not yet recorded the test
fails, naming the closest record's differences; ``record.py`` says how to add one.

They are computed in a fresh process, as they were recorded: TensorFlow's thread pools
are fixed by the first run of a process, and an earlier test that ran TensorFlow with
its default pools would change the summation order of the larger matrix products
(source A's 512-wide layers) in the last bits.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

RECORD = Path(__file__).parent / "golden" / "record.py"
GOLDEN = Path(__file__).parent / "golden" / "golden.json"


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(golden: dict, now: dict) -> list[str]:
    """Every number of ``now`` that differs from the record ``golden`` (a history column
    once, at its first differing epoch)."""
    assert sorted(now) == sorted(golden)
    found = []
    for run, recorded in golden.items():
        for key, value in recorded["metrics"].items():
            if not _same(now[run]["metrics"].get(key), value):
                found.append(f"{run} metrics {key}: {value!r} -> {now[run]['metrics'].get(key)!r}")
        assert sorted(now[run]["history"]) == sorted(recorded["history"]), run
        for column, values in recorded["history"].items():
            for epoch, (x, y) in enumerate(zip(values, now[run]["history"][column], strict=True)):
                if not _same(x, y):
                    found.append(f"{run} history {column} epoch {epoch + 1}: {x!r} -> {y!r}")
                    break
    return found


def test_the_golden_runs_give_the_recorded_numbers_bit_for_bit(tmp_path):
    records = json.loads(GOLDEN.read_text())["records"]
    out = tmp_path / "now.json"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    command = [sys.executable, str(RECORD), str(out)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    now = json.loads(out.read_text())
    found = {r["machine"]: differences(r["runs"], now) for r in records}
    if not any(not d for d in found.values()):
        machine, closest = min(found.items(), key=lambda item: len(item[1]))
        raise AssertionError(
            f"no record matches bit for bit; the closest ({machine}) differs in "
            f"{len(closest)} numbers:\n" + "\n".join(closest[:20])
        )


def test_the_golden_comparison_catches_a_changed_last_bit():
    """The comparison itself: one number moved by one ulp is a difference."""
    import numpy as np

    runs = json.loads(GOLDEN.read_text())["records"][0]["runs"]
    changed = json.loads(json.dumps(runs))
    run = next(iter(changed))
    key = next(k for k, v in changed[run]["metrics"].items() if isinstance(v, float))
    changed[run]["metrics"][key] = float(np.nextafter(changed[run]["metrics"][key], np.inf))
    column = next(iter(changed[run]["history"]))
    changed[run]["history"][column][3] = float(np.nextafter(changed[run]["history"][column][3], 0))
    assert differences(runs, runs) == []
    assert len(differences(runs, changed)) == 2
