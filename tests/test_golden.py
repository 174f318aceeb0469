"""The numbers of a fixed set of runs, recorded from main before the single-pipeline
restructure (``tests/golden/record.py``), must come out bit for bit the same.

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


def test_the_golden_runs_give_the_recorded_numbers_bit_for_bit(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    out = tmp_path / "now.json"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    command = [sys.executable, str(RECORD), str(out)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    now = json.loads(out.read_text())
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
