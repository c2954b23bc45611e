"""scripts/compare_cores.py: its comparison rule, and (with an LLNL build) the comparison itself.

The full comparison needs braidnet built against LLNL XBraid in a second tree: set
``BRAIDNET_LLNL_ROOT`` to its root (see scripts/compare_cores.py); it is skipped otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "compare_cores.py")


def _module():
    spec = importlib.util.spec_from_file_location("compare_cores", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_difference_rule():
    cc = _module()
    a = {"iterations": 2, "levels": 3, "residual_norms": [-1.0, 1e-3, 1e-3]}
    same, big, _ = cc.difference(a, dict(a, residual_norms=[-1.0, 1e-3 * (1 + 5e-9), 1e-3 * (1 + 5e-9)]))
    assert same and big > 0
    same, _, why = cc.difference(a, dict(a, residual_norms=[-1.0, 1.001e-3, 1.001e-3]))
    assert not same and "residuals" in why
    same, _, why = cc.difference(a, dict(a, iterations=3, residual_norms=[-1.0, 1e-3, 1e-4, 1e-4]))
    assert not same and "iterations" in why
    f = dict(a, final=[[1.0, 2.0], [3.0, 4.0]])
    assert cc.difference(f, dict(f, final=[[1.0, 2.0], [3.0, 4.0 * (1 + 5e-9)]]))[0]
    same, _, why = cc.difference(f, dict(f, final=[[1.0, 2.0], [3.0, 4.001]]))
    assert not same and why == "final access values"
    same, _, why = cc.difference(f, dict(f, final=[[1.0, 2.0]]))
    assert not same and why == "final access points"
    assert not cc.difference(f, a)[0]
    assert cc.difference({"error": "x"}, {"error": "x"})[0]
    assert not cc.difference({"error": "x"}, a)[0]


def test_cases_are_unique():
    cc = _module()
    names = [name for name, _ in cc.OPTION_SETS]
    assert len(names) == len(set(names))


@pytest.mark.skipif(not os.environ.get("BRAIDNET_LLNL_ROOT"), reason="BRAIDNET_LLNL_ROOT (an LLNL build) not set")
def test_bundled_core_matches_llnl():
    done = subprocess.run([sys.executable, SCRIPT, "--bundled", ROOT, "--llnl", os.environ["BRAIDNET_LLNL_ROOT"]],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
