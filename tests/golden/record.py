"""Record (or re-compute) the golden numbers: what a fixed set of runs writes.

The set: the 8 source experiments at 20 epochs as single runs, a 6-job fused sweep
(2 lambdas x 3 seeds of ``reg=l1_activity``), and one ``trainer.engine=keras`` run.
For each run: every number of ``metrics.json`` (timings, names and hashes aside) and
every cell of ``history.csv``, read back from the files.

Only the command line (``regexp run``) and the files are used, so the same script
records the numbers of any version of regexp:

    python tests/golden/record.py OUT.json

oneDNN's kernels differ by CPU, and so do the last bits of the numbers: ``golden.json``
holds one record per kind of machine, each made by this script at commit d9f341b (main
before the single-pipeline restructure) on that machine. To add a kind of machine, run
it there from a checkout of d9f341b (``git worktree add /tmp/gold d9f341b``, then
``PYTHONPATH=/tmp/gold python /tmp/gold/tests/golden/record.py OUT.json``) and append
``{"machine": ..., "commit": "d9f341b", "runs": <OUT.json>}`` to its ``records``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

EXPERIMENTS = (
    "a2_iris_l1_activity", "b1_loss_fn", "b2_keras_mixed", "b3_l3_custom",
    "b4_l1_activity", "b5_l1_activity_preact", "b6_all", "b7_kl_sparsity",
)  # fmt: skip
EPOCHS = "trainer.epochs=20"
SWEEP = ("reg=l1_activity", "reg.lam=1e-3,1e-2", "seed=0,1,2", EPOCHS)
KERAS = ("trainer.engine=keras", EPOCHS)
NOT_NUMBERS = ("train_seconds", "config_hash", "name", "engine", "group_size")


def numbers(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out: dict = {}
        for k, v in node.items():
            out.update(numbers(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def read(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    kept = {k: v for k, v in numbers(metrics).items() if k.split(".")[0] not in NOT_NUMBERS}
    history = pd.read_csv(folder / "history.csv")
    return {"metrics": kept, "history": {c: history[c].tolist() for c in history.columns}}


def compute(tmp: Path) -> dict:
    from regexp.cli import main

    runs = {}
    for name in EXPERIMENTS:
        folder = tmp / name
        assert main(["run", f"experiment={name}", EPOCHS, f"hydra.run.dir={folder}"]) == 0
        runs[name] = read(folder)
    assert main(["run", "-m", *SWEEP, f"hydra.sweep.dir={tmp / 'sweep'}"]) == 0
    for folder in sorted((tmp / "sweep").iterdir()):
        if (folder / "metrics.json").is_file():
            runs[f"sweep/{folder.name.split('_')[0]}"] = read(folder)
    assert main(["run", *KERAS, f"hydra.run.dir={tmp / 'keras'}"]) == 0
    runs["keras"] = read(tmp / "keras")
    return runs


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        result = compute(Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} runs recorded in {sys.argv[1]}")
