"""The package's structure: imports go one way (import-linter's contracts in
pyproject.toml), and a contract really fails when a module imports upward."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_import_contracts_hold():
    result = _lint(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    for folder in ("regexp", "hydra_plugins"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    keys = tmp_path / "regexp" / "keys.py"  # a leaf that starts importing the pipeline
    keys.write_text(keys.read_text() + "\n\ndef _late():\n    from regexp import pipeline\n")
    result = _lint(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "regexp.keys -> regexp.pipeline" in result.stdout
