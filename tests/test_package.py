"""Packaging: the built wheel and `pip install .` give a working `regexp` anywhere.

SLOW (about a minute; marked ``package``, leave it out with ``pytest -m "not package"``).
It builds the sdist and the wheel with ``python -m build --no-isolation`` from a copy of
this checkout, installs them with ``pip install --no-deps`` into fresh virtual
environments and runs ``regexp`` there from a folder outside the checkout. The fresh
environments borrow this environment's site-packages for TensorFlow and the other
dependencies through a ``.pth`` line (a plain path: the ``.pth`` files inside it, such as
an editable install's finder, are not run), so nothing is downloaded and the ``regexp``
that runs is the installed copy, never this checkout.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.package

# what a `regexp` in the fresh environment reports about itself
PROBE = """
import json, hydra_plugins, regexp
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from regexp.paths import CONF, source_checkout
print(json.dumps({
    "regexp": regexp.__file__,
    "conf": str(CONF),
    "checkout": str(source_checkout()),
    "launchers": [c.__name__ for c in Plugins.instance().discover(Launcher)],
}))
"""


@pytest.fixture(scope="module", autouse=True)
def _build_tools():
    """Building without isolation needs the dev extra's build, setuptools and wheel."""
    try:
        setuptools = version("setuptools")
        for name in ("build", "wheel"):
            version(name)
    except PackageNotFoundError as e:
        pytest.skip(f"building needs the dev extra ({e.name} is missing): make install")
    if int(setuptools.split(".")[0]) < 68:
        pytest.skip(f"building needs the dev extra (setuptools {setuptools} < 68): make install")


def _run(command: list[str], **kw) -> str:
    """Run a command; fail with its output unless it exits 0."""
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{' '.join(command)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@dataclass
class Venv:
    """A fresh virtual environment that borrows this one's site-packages."""

    root: Path
    site: Path

    @classmethod
    def create(cls, root: Path) -> "Venv":
        # without pip: pip, setuptools and the rest come from this environment's
        # site-packages, so the fresh one holds nothing but what is installed into it
        _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
        venv = cls(root, Path())
        venv.site = Path(venv.python("-c", "import sysconfig as s; print(s.get_path('purelib'))"))
        paths = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))
        (venv.site / "zz_project_site_packages.pth").write_text("\n".join(paths) + "\n")
        return venv

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(VIRTUAL_ENV=str(self.root), PYTHONNOUSERSITE="1")
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, program: str, *args: str, cwd: Path) -> str:
        """Run bin/<program> in ``cwd``; fail with its output unless it exits 0."""
        return _run([str(self.root / "bin" / program), *args], cwd=cwd, env=self.env())

    def python(self, *args: str, cwd: Path | None = None) -> str:
        return self.run("python", *args, cwd=cwd or self.root).strip()

    def pip_install(self, *target: str) -> None:
        # --ignore-installed: the borrowed site-packages' regexp (this checkout, editable)
        # is neither "already satisfied" nor uninstalled
        self.python("-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--ignore-installed", "--no-cache-dir",
                    "--disable-pip-version-check", *target)  # fmt: skip

    def probe(self, cwd: Path) -> dict:
        return json.loads(self.python("-c", PROBE, cwd=cwd))


def _copy_checkout(dst: Path) -> Path:
    """This checkout's files as git sees them (working tree, untracked but not ignored):
    builds there leave no build/ or stale files here."""
    try:
        command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        listed = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__",
                                      "outputs", "multirun", "mlruns")  # fmt: skip
        shutil.copytree(ROOT, dst, ignore=skip)
        return dst
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # not deleted in the working tree
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _copy_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def dist(source, tmp_path_factory) -> Path:
    """The sdist and, built from it, the wheel."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)])
    return out


@pytest.fixture(scope="module")
def wheel_venv(dist, tmp_path_factory) -> Venv:
    venv = Venv.create(tmp_path_factory.mktemp("wheel") / "venv")
    venv.pip_install(str(next(dist.glob("regexp-*.whl"))))
    return venv


@pytest.fixture
def work(tmp_path) -> Path:
    """A working folder outside the checkout: no conf/ or regexp/ to fall back on."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def _check_installed(venv: Venv, work: Path, source: Path, editable: bool = False) -> None:
    """regexp and all its configs come from the installed copy (editable: from
    ``source``), and Hydra finds the launcher plugins."""
    info = venv.probe(work)
    package = source / "regexp" if editable else venv.site / "regexp"
    assert Path(info["regexp"]) == package / "__init__.py"
    conf = Path(info["conf"])
    assert conf == (source / "conf" if editable else package / "conf") and conf.is_dir()
    ours = {p.relative_to(source / "conf") for p in (source / "conf").rglob("*.yaml")}
    assert {p.relative_to(conf) for p in conf.rglob("*.yaml")} == ours
    if not editable:
        assert info["checkout"] == "None"  # no git commit claimed for an installed copy
    assert {"FusedLauncher", "FusedSubmititLocalLauncher"} <= set(info["launchers"])


def _check_list(venv: Venv, work: Path) -> None:
    out = venv.run("regexp", "list", cwd=work)
    groups = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    for group in ("dataset", "model", "reg", "optimizer", "trainer", "experiment"):
        assert group in groups, out
    assert "blobs*" in groups["dataset"].split() and "l1_activity" in groups["reg"].split()


def _check_run(venv: Venv, work: Path) -> None:
    venv.run("regexp", "run", "trainer.epochs=2", f"hydra.run.dir={work / 'run'}", cwd=work)
    metrics = _metrics(work / "run")
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 2
    # an installed copy has no requirements.lock beside it: env.json says so
    assert json.loads((work / "run" / "env.json").read_text())["lock"] is None


def test_wheel_and_sdist_ship_the_configs_and_the_plugin(dist, source):
    (wheel,) = dist.glob("regexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {f"regexp/conf/{p.relative_to(source / 'conf').as_posix()}"
            for p in (source / "conf").rglob("*.yaml")}  # fmt: skip
    assert "regexp/conf/config.yaml" in conf and conf <= names
    # every module, also of subpackages that pyproject.toml's `packages` must list
    code = {p.relative_to(source).as_posix() for top in ("regexp", "hydra_plugins")
            for p in (source / top).rglob("*.py")}  # fmt: skip
    assert "hydra_plugins/regexp_launcher/fused_launcher.py" in code and code <= names
    # hydra_plugins is a namespace that other Hydra plugins share
    assert "hydra_plugins/__init__.py" not in names
    (sdist,) = dist.glob("regexp-*.tar.gz")
    with tarfile.open(sdist) as tar:
        assert any(n.endswith("/conf/reg/none.yaml") for n in tar.getnames())


def test_wheel_is_what_the_fresh_venv_runs(wheel_venv, source, work):
    _check_installed(wheel_venv, work, source)


def test_wheel_list_and_check(wheel_venv, work):
    _check_list(wheel_venv, work)
    out = wheel_venv.run("regexp", "check", cwd=work)
    assert "ok: the config composes and validates" in out


def test_wheel_trains_a_run(wheel_venv, work):
    _check_run(wheel_venv, work)


def test_wheel_trains_a_fused_sweep(wheel_venv, work):
    sweep = work / "sweep"
    wheel_venv.run("regexp", "run", "-m", "trainer.epochs=2", "seed=0,1",
                   f"hydra.sweep.dir={sweep}", cwd=work)  # fmt: skip
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert [p.name[0] for p in jobs] == ["0", "1"]
    for job in jobs:
        metrics = _metrics(job)
        assert metrics["status"] == "completed"
        # the default launcher for -m trained both jobs as one fused model
        assert metrics["engine"].startswith("fused")
        assert "group of 2" in metrics["engine"] or metrics.get("group_size") == 2


def test_pip_install_from_source(source, tmp_path_factory, work):
    """`pip install .` (not editable) from the source tree gives the same package."""
    venv = Venv.create(tmp_path_factory.mktemp("source") / "venv")
    venv.pip_install(str(source))
    _check_installed(venv, work, source)
    _check_list(venv, work)
    _check_run(venv, work)


def test_editable_install_finds_the_configs_and_the_plugin(source, tmp_path_factory, work):
    """A plain `pip install -e .` (PEP 660, as the Makefile does): Hydra scans
    hydra_plugins.__path__ with pkgutil, which sees regexp_launcher only if the editable
    install maps hydra_plugins to the real folder; `check` needs the fused launcher's
    config (conf/config.yaml picks it)."""
    venv = Venv.create(tmp_path_factory.mktemp("editable") / "venv")
    venv.pip_install("--editable", str(source))
    _check_installed(venv, work, source, editable=True)
    assert "ok: the config composes" in venv.run("regexp", "check", "-m", "seed=0,1", cwd=work)
