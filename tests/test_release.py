"""Release packaging, without building anything: the version, build_info(), setup.py's source lists,
what the sdist holds (MANIFEST.in) and setup.py's refusal of an incomplete tree.

scripts/check_release.sh does the rest: it builds the sdist and the wheel, installs each into a fresh
environment and runs them.
"""
from __future__ import annotations

import ast
import glob
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

import braidnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_constants() -> dict:
    """The literal lists at the top of setup.py (read, not run)."""
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "EXTENSIONS":
                out[name] = ast.literal_eval(node.value)
            elif name in ("CORE_SOURCES", "CORE_HEADERS"):
                # tuple(os.path.join("xbraid", f) for f in (...)): the names in the inner tuple
                gen = node.value.args[0]
                out[name] = tuple("xbraid/" + f for f in ast.literal_eval(gen.generators[0].iter))
    return out


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _tracked_files(untracked: bool = False) -> list[str]:
    """The files git tracks in this checkout (and, if untracked, those it would add: not ignored)."""
    if not os.path.isdir(os.path.join(ROOT, ".git")) and not os.path.isfile(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout (an unpacked sdist)")
    try:
        cmd = ["git", "ls-files", "--cached"] + (["--others", "--exclude-standard"] if untracked else [])
        out = subprocess.run(cmd, cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"git ls-files failed: {e}")
    return [p for p in out.splitlines() if os.path.isfile(os.path.join(ROOT, p))]


def _copy_tree(dest: str) -> str:
    """Copy this checkout's sources (what git tracks or would add; no build products) into dest."""
    for rel in _tracked_files(untracked=True):
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(dest, rel))
    return dest


def _run_setup(tree: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "setup.py", *args], cwd=tree, capture_output=True, text=True, env=env,
                          timeout=120)


# --- the version and what was built --------------------------------------------------------------------

def test_version_is_written_once():
    project = _pyproject()
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "braidnet.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+|\.post\d+)?", braidnet.__version__)


def test_installed_metadata_has_this_version():
    try:
        installed = importlib.metadata.version("braidnet")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("braidnet is not installed (no metadata)")
    assert installed == braidnet.__version__, (
        f"the installed metadata says {installed}, braidnet.__version__ {braidnet.__version__}: reinstall "
        f"(pip install --no-build-isolation -e .)")


def test_setup_py_reports_the_package_version(tmp_path):
    tree = _copy_tree(str(tmp_path / "src"))
    res = _run_setup(tree, "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == braidnet.__version__


def test_build_info():
    info = braidnet.build_info()
    assert set(info) == {"version", "core", "xbraid_dir", "blas"}
    assert info["blas"].startswith("OpenBLAS "), info["blas"]
    assert info["version"] == braidnet.__version__
    assert info["core"] in ("bundled", "LLNL XBraid")
    assert (info["xbraid_dir"] is None) == (info["core"] == "bundled")
    from braidnet.braid import BUNDLED_CORE
    assert BUNDLED_CORE == (info["core"] == "bundled"), "braidnet/_build.py disagrees with braidnet.braid"


def test_version_flag(tmp_path):
    # run elsewhere: `python -m` puts the working folder first on sys.path; PYTHONPATH names the
    # braidnet this process imported (an in-place build, e.g. scripts/check_llnl.sh's, is not the
    # installed one)
    from mpi_launch import child_env
    res = subprocess.run([sys.executable, "-m", "braidnet.cli", "--version"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=child_env())
    assert res.returncode == 0, res.stderr
    info = braidnet.build_info()
    core = info["core"] + (f", {info['xbraid_dir']}" if info["xbraid_dir"] else "")
    assert res.stdout == f"braidnet {braidnet.__version__} (core: {core})\n"


# --- setup.py's lists and its refusal of an incomplete tree -------------------------------------------

def test_setup_lists_match_the_tree():
    c = _setup_constants()
    pyx = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "braidnet", "*.pyx")))
    assert sorted(c["EXTENSIONS"]) == pyx, "setup.py's EXTENSIONS must name every braidnet/*.pyx"
    core = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "xbraid", "*.c")))
    assert sorted(c["CORE_SOURCES"]) == core
    headers = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "xbraid", "*.h")))
    assert sorted(c["CORE_HEADERS"]) == headers


@pytest.mark.parametrize("remove", ["xbraid/relax.c", "xbraid/braid_status.h", "braidnet/_layerapp.pyx",
                                    "braidnet/kernels/bn_kernels.h"])
def test_setup_refuses_a_missing_source(tmp_path, remove):
    tree = _copy_tree(str(tmp_path / "src"))
    os.remove(os.path.join(tree, remove))
    res = _run_setup(tree, "--version")
    assert res.returncode != 0
    assert f"missing: {remove}" in res.stderr, res.stderr


def test_setup_refuses_an_unlisted_source(tmp_path):
    tree = _copy_tree(str(tmp_path / "src"))
    for rel in ("braidnet/extra.pyx", "xbraid/extra.c"):
        with open(os.path.join(tree, rel), "w"):
            pass
    res = _run_setup(tree, "--version")
    assert res.returncode != 0
    assert "not in setup.py's lists (EXTENSIONS, CORE_SOURCES): braidnet/extra.pyx, xbraid/extra.c" in res.stderr, \
        res.stderr


# --- what the sdist and the wheel hold ---------------------------------------------------------------

def test_sdist_holds_every_source(tmp_path):
    """The real sdist of a copy of this checkout (no build isolation: setuptools of this environment)
    holds every file git knows except .gitignore and .ci/, and no build product."""
    pytest.importorskip("setuptools")
    tree = _copy_tree(str(tmp_path / "src"))
    products = ["braidnet/braid.c", "braidnet/_build.py", "braidnet/braid.cpython-311-x86_64-linux-gnu.so",
                "braidnet/__pycache__/cli.cpython-311.pyc", "build/temp/xbraid/relax.o", "xbraid/relax.o"]
    for rel in products:                # what an in-place build leaves behind
        os.makedirs(os.path.join(tree, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(tree, rel), "w"):
            pass
    res = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
         str(tmp_path / "dist")], cwd=tree, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert res.returncode == 0, res.stderr[-3000:]
    name = res.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / "dist" / name) as tar:
        held = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {p for p in _tracked_files() if p != ".gitignore" and not p.startswith(".ci/")}
    missing = sorted(expected - held)
    assert not missing, f"the sdist lacks these files (MANIFEST.in): {missing}"
    stray = sorted(held & set(products))
    assert not stray, f"the sdist holds build products: {stray}"
    for rel in ["LICENSE", "README.md", "xbraid/relax.c", "xbraid/tests/test_core.c", "braidnet/braid.pyx",
                "braidnet/_braid/core.pxi", "braidnet/kernels/bn_kernels.c", "braidnet/py.typed"]:
        assert rel in held


def test_wheel_holds_no_build_only_sources():
    """The wheel gets the modules, stubs, py.typed and .pxd (cimport API), not .pyx/.pxi/C sources."""
    st = _pyproject()["tool"]["setuptools"]
    assert st.get("include-package-data") is False, "else MANIFEST.in's sources would go into the wheel"
    data = st["package-data"]["braidnet"]
    assert {"*.pyi", "py.typed"} <= set(data)
    assert not [p for p in data if p.endswith((".pyx", ".pxi", ".c", ".h"))]
    assert os.path.isfile(os.path.join(ROOT, "LICENSE"))
