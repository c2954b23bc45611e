"""The configuration rules of braidnet.config: every key's range, unreadable config paths, the keys a
resumed run may change (resume_conflicts, describe) and optimizer.stall_steps.

(The older config tests live in tests/test_train.py.)
"""
import glob
import os
import sys

import pytest

from braidnet import config as C
from braidnet import problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------
# ranges

@pytest.mark.parametrize("override,message", [
    # the user's reports: each failed later, inside training
    ("network.T=0", r"^network\.T must be > 0, got 0\.0$"),
    ("optimizer.ls_factor=0", r"^optimizer\.ls_factor must be > 0 and < 1, got 0\.0$"),
    ("optimizer.armijo_c=5", r"^optimizer\.armijo_c must be > 0 and < 1, got 5\.0$"),
    ("data.seed=-1", r"^data\.seed must be >= 0, got -1$"),
    # the rest of the new ranges
    ("network.T=-2", r"^network\.T must be >= 0, got -2\.0; allowed: > 0$"),
    ("optimizer.ls_factor=1", r"^optimizer\.ls_factor must be > 0 and < 1, got 1\.0$"),
    ("optimizer.ls_factor=1.5", r"^optimizer\.ls_factor must be > 0 and < 1, got 1\.5$"),
    ("optimizer.armijo_c=0", r"^optimizer\.armijo_c must be > 0 and < 1, got 0\.0$"),
    ("optimizer.armijo_c=1", r"^optimizer\.armijo_c must be > 0 and < 1, got 1\.0$"),
    ("optimizer.armijo_c=-0.1", r"^optimizer\.armijo_c must be >= 0, got -0\.1; allowed: > 0 and < 1$"),
    ("network.seed=-3", r"^network\.seed must be >= 0, got -3$"),
    ("braid.drop=0.5", r"^braid\.drop must be 0 or > 1, got 0\.5$"),
    ("braid.drop=1", r"^braid\.drop must be 0 or > 1, got 1\.0$"),
    ("braid.drop=-1", r"^braid\.drop must be >= 0, got -1\.0; allowed: 0 or > 1$"),
    ("braid.max_levels=0", r"^braid\.max_levels must be >= 1 and <= 64, got 0$"),
    ("braid.max_levels=65", r"^braid\.max_levels must be >= 1 and <= 64, got 65$"),
    ("braid.nrelax=-1", r"^braid\.nrelax must be >= 0, got -1$"),
    ("braid.nrelax_fine=-2", r"^braid\.nrelax_fine must be >= -1, got -2$"),
    ("braid.min_coarse=0", r"^braid\.min_coarse must be >= 1, got 0$"),
    ("braid.iterations=0", r"^braid\.iterations must be >= 1, got 0$"),
    ("braid.max_iter=0", r"^braid\.max_iter must be >= 1, got 0$"),
    ("braid.abs_tol=-1e-3", r"^braid\.abs_tol must be >= 0, got -0\.001$"),
    ("data.n_train=0", r"^data\.n_train must be >= 1, got 0$"),
    ("data.n_val=-1", r"^data\.n_val must be >= 0, got -1$"),
    ("network.width=0", r"^network\.width must be >= 1, got 0$"),
    ("network.gamma_ddt=-1", r"^network\.gamma_ddt must be >= 0, got -1\.0$"),
    ("network.init_classifier=-1", r"^network\.init_classifier must be >= 0, got -1\.0$"),
    ("optimizer.iterations=-1", r"^optimizer\.iterations must be >= 0, got -1$"),
    ("optimizer.memory=0", r"^optimizer\.memory must be >= 1, got 0$"),
    ("optimizer.gtol=-1", r"^optimizer\.gtol must be >= 0, got -1\.0$"),
    ("optimizer.ls_trials=0", r"^optimizer\.ls_trials must be >= 1, got 0$"),
    ("nested.refine=1", r"^nested\.refine must be >= 2, got 1$"),
    ("nested.boost_d=0", r"^nested\.boost_d must be >= 1, got 0$"),
    ("nested.boost_iterations=-1", r"^nested\.boost_iterations must be >= 0, got -1$"),
    ("nested.accuracy_threshold=-5", r"^nested\.accuracy_threshold must be >= 0, got -5\.0$"),
    ("nested.calibrate=-1", r"^nested\.calibrate must be >= 0, got -1$"),
    ("nested.work_unit_seconds=-1", r"^nested\.work_unit_seconds must be >= 0, got -1\.0$"),
    ("output.checkpoint_every=-1", r"^output\.checkpoint_every must be >= 0, got -1$"),
    ("output.validate_every=0", r"^output\.validate_every must be >= 1, got 0$"),
    ("output.dir=''", r"^output\.dir must be a non-empty string, got ''$"),
    ("output.dir='  '", r"^output\.dir must be a non-empty string"),
    ("optimizer.stall_steps=0", r"^optimizer\.stall_steps must be >= 1, got 0$"),
    ("optimizer.stall_steps=-2", r"^optimizer\.stall_steps must be >= 1, got -2$"),
    ("optimizer.stall_steps=1.5", r"^optimizer\.stall_steps must be an integer, got 1\.5$"),
    ("braid.skip=always", r"^braid\.skip must be one of first, every, off; got 'always'$"),
    ("braid.skip=1", r"^braid\.skip must be a string, got 1$"),
    ("braid.final_fc_relax=1", r"^braid\.final_fc_relax must be true or false, got 1$"),
])
def test_ranges(override, message):
    with pytest.raises(C.ConfigError, match=message) as e:
        C.load_config(None, [override])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("override", [
    "network.T=1e-3", "optimizer.ls_factor=0.9", "optimizer.armijo_c=0.5", "data.seed=0", "network.seed=0",
    "data.seed=12345678901", "braid.drop=0", "braid.drop=1e4", "braid.drop=1.01", "braid.max_levels=64",
    "braid.max_levels=1", "braid.nrelax_fine=-1", "braid.nrelax_fine=0", "data.n_val=0", "optimizer.iterations=0",
    "output.checkpoint_every=0", "nested.calibrate=0", "optimizer.stall_steps=1", "optimizer.stall_steps=100",
    "nested.accuracy_threshold=0",
])
def test_range_edges_allowed(override):
    C.load_config(None, [override])


def test_braid_options_from_the_config():
    from mpi4py import MPI

    from braidnet.braid import check_options
    from braidnet.problem import Problem

    for skip, core_skip in (("first", 1), ("every", "every"), ("off", 0)):
        cfg = C.load_config(None, [f"braid.skip={skip}", "braid.final_fc_relax=true", "data.n_train=20",
                                   "data.n_val=0"])
        opts = Problem(cfg, MPI.COMM_SELF).braid_options()
        assert opts["skip"] == skip and opts["final_fc_relax"] is True
        assert check_options(0.0, 1.0, 8, **opts)["skip"] == core_skip


def test_every_numeric_key_has_a_range():
    for section, keys in C.SCHEMA.items():
        for key, (default, kind, _) in keys.items():
            if kind in (int, float):
                assert (section, key) in C.RANGES, f"{section}.{key}"
                assert C.RANGES[(section, key)].allows(default), f"{section}.{key} default"
    assert set(C.RANGES) <= {(s, k) for s in C.SCHEMA for k in C.SCHEMA[s]}


def test_ranges_also_apply_in_files(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[optimizer]\nls_factor = 0\n")
    with pytest.raises(C.ConfigError, match=r"optimizer\.ls_factor must be > 0 and < 1, got 0\.0"):
        C.load_config(str(path))


def test_lpt_text_needs_a_path():
    with pytest.raises(C.ConfigError, match=r"data\.dataset='lpt_text' needs data\.path"):
        C.load_config(None, ["data.dataset=lpt_text"])
    assert C.load_config(None, ["data.dataset=lpt_text", "data.path=somewhere"])["data"]["path"] == "somewhere"


def test_examples_load():
    examples = sorted(glob.glob(os.path.join(ROOT, "examples", "*.toml")))
    assert examples
    for path in examples:
        cfg = C.load_config(path)
        # on as many ranks as the coarsest level allows, up to 16
        coarsest = problem.level_plan(cfg)[0][0]
        C.load_config(path, nprocs=min(16, coarsest + 1))


# ---------------------------------------------------------------------------------------------
# stall_steps

def test_stall_steps():
    assert C.defaults()["optimizer"]["stall_steps"] == 3
    assert C.load_config(None, ["optimizer.stall_steps=7"])["optimizer"]["stall_steps"] == 7
    assert "line search fails" in C.SCHEMA["optimizer"]["stall_steps"][2]
    with pytest.raises(C.ConfigError, match=r"optimizer\.stall_steps must be an integer, got True"):
        C.load_config(None, ["optimizer.stall_steps=true"])


# ---------------------------------------------------------------------------------------------
# unreadable config paths: one line naming the path

def _one_line_error(path):
    with pytest.raises(C.ConfigError) as e:
        C.load_config(str(path))
    text = str(e.value)
    assert "\n" not in text and str(path) in text, text
    return text


def test_config_path_is_a_folder(tmp_path):
    assert "is a folder" in _one_line_error(tmp_path)


def test_config_path_not_utf8(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[data]\ndataset = \"p\xe9aks\"\n")
    assert "is not UTF-8" in _one_line_error(bad)
    bad.write_bytes(b"\xff\xfe\x00[\x00d\x00")
    assert "is not UTF-8" in _one_line_error(bad)


def test_config_path_missing(tmp_path):
    assert "config file not found" in _one_line_error(tmp_path / "nope.toml")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads any file regardless of its permissions")
def test_config_path_unreadable(tmp_path):
    p = tmp_path / "secret.toml"
    p.write_text("[network]\nwidth = 4\n")
    p.chmod(0)
    try:
        assert "permission denied" in _one_line_error(p)
    finally:
        p.chmod(0o600)


def test_config_path_unreadable_message(tmp_path, monkeypatch):
    # the same message path for root as well: open() refused
    p = tmp_path / "secret.toml"
    p.write_text("[network]\nwidth = 4\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(p))
    monkeypatch.setattr(C, "open", refuse, raising=False)
    assert "cannot be read: permission denied" in _one_line_error(p)


def test_config_invalid_toml_is_still_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nwidth = = 3\n")
    assert "is not valid TOML" in _one_line_error(bad)


# ---------------------------------------------------------------------------------------------
# resume: which keys may change

def _cfg(*overrides):
    return C.load_config(None, list(overrides))


def test_resume_equal_configs():
    assert C.resume_conflicts(C.defaults(), C.defaults()) == []
    a = _cfg("network.width=16", "nested.schedule=[4, 4]", "network.layers=16")
    assert C.resume_conflicts(a, _cfg("network.width=16", "nested.schedule=[4, 4]", "network.layers=16")) == []


@pytest.mark.parametrize("override,key,old,new", [
    ("network.width=16", "network.width", 8, 16),          # the model
    ("data.seed=3", "data.seed", 0, 3),                     # the data
    ("braid.cfactor=2", "braid.cfactor", 4, 2),             # the algorithm
    ("optimizer.method=sd", "optimizer.method", "lbfgs", "sd"),
    ("optimizer.ls_factor=0.25", "optimizer.ls_factor", 0.5, 0.25),
    ("braid.fmg=true", "braid.fmg", False, True),
    ("nested.refine=4", "nested.refine", 2, 4),
    ("braid.skip=every", "braid.skip", "first", "every"),
    ("braid.final_fc_relax=true", "braid.final_fc_relax", False, True),
])
def test_resume_conflicts_reported(override, key, old, new):
    assert C.resume_conflicts(C.defaults(), _cfg(override)) == [(key, old, new)]


def test_resume_conflicts_in_schema_order():
    new = _cfg("optimizer.method=sd", "data.seed=3", "network.width=16", "braid.cfactor=2")
    got = C.resume_conflicts(C.defaults(), new)
    assert [k for k, _, _ in got] == ["data.seed", "network.width", "braid.cfactor", "optimizer.method"]


def test_resume_free_keys_not_reported():
    new = _cfg("optimizer.iterations=500", "output.dir=elsewhere", "nested.schedule=[1, 2, 3]",
               "optimizer.gtol=1e-3", "nested.accuracy_threshold=90", "optimizer.stall_steps=9",
               "output.checkpoint_every=1", "output.progress=false", "output.validate_every=5")
    new["parallel"]["data"] = 2         # (checked against the rank count where it is loaded)
    assert C.resume_conflicts(C.defaults(), new) == []
    # the declaration: everything under [output] and exactly these others
    assert {k for s, k in C.RESUMABLE if s == "output"} == set(C.SCHEMA["output"])
    assert {(s, k) for s, k in C.RESUMABLE if s != "output"} == {
        ("optimizer", "iterations"), ("optimizer", "epochs"), ("optimizer", "gtol"), ("optimizer", "stall_steps"),
        ("nested", "accuracy_threshold"), ("nested", "schedule"), ("parallel", "data")}


def test_resume_key_missing_from_an_old_config_compares_to_its_default():
    old = C.defaults()
    del old["optimizer"]["armijo_c"]              # an older braidnet, without the key
    del old["nested"]                             # ... or without a whole section
    old["run"] = {"ranks": 4}                     # config.json's extra section is ignored
    assert C.resume_conflicts(old, C.defaults()) == []
    got = C.resume_conflicts(old, _cfg("optimizer.armijo_c=0.01", "nested.states=zero"))
    assert got == [("optimizer.armijo_c", 1e-4, 0.01), ("nested.states", "interpolate", "zero")]


def test_resume_values_compare_as_config_values():
    old = C.defaults()
    old["network"]["T"] = 5                       # 5 == 5.0 (a JSON round trip may give an int)
    assert C.resume_conflicts(old, C.defaults()) == []
    old = C.defaults()
    old["braid"]["fmg"] = 0                       # a bool is not a number
    assert C.resume_conflicts(old, C.defaults()) == [("braid.fmg", 0, False)]


# ---------------------------------------------------------------------------------------------
# describe

def test_describe_marks_the_free_keys_and_loads_back(tmp_path):
    text = C.describe()
    lines = text.splitlines()
    assert lines[0].startswith("#")
    head = "\n".join(ln for ln in lines[:6] if ln.startswith("#"))
    assert "--resume" in head and C.RESUME_NOTE in head
    section = None
    for ln in lines:
        if ln.startswith("["):
            section = ln.strip("[]")
        elif " = " in ln and not ln.startswith("#"):
            key = ln.split(" = ", 1)[0]
            assert ln.endswith(C.RESUME_NOTE) == ((section, key) in C.RESUMABLE), ln
    assert text.count(C.RESUME_NOTE) == len(C.RESUMABLE) + 1       # each free key, and the note at the top
    assert tomllib.loads(text) == C.defaults()
    path = tmp_path / "d.toml"
    path.write_text(text)
    assert C.load_config(str(path)) == C.defaults()
    assert "ls_factor = 0.5  # backtracking factor [> 0 and < 1]" in text
