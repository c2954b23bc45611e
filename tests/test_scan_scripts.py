"""Tests of the study scripts: the scan's plan (scripts/scan_peaks.sh --dry-run) and the statistics
of scripts/summarize_scan.py on a made-up scan folder whose answers are known."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_summarize():
    spec = importlib.util.spec_from_file_location("summarize_scan", os.path.join(ROOT, "scripts", "summarize_scan.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


summarize_scan = _load_summarize()

CELLS = [("0", "1e-5"), ("0", "1e-7")]


def _fake_scan(folder, accuracy, seeds, width=8, skip=()):
    """One run folder per (method, cell, seed) holding weights.npz with accuracy(method, cell, seed)."""
    for method in ("nested", "plain"):
        for ci, (wi, g) in enumerate(CELLS):
            for s in seeds:
                name = f"{method}_w{width}_wi{wi}_g{g}_s{s}"
                d = folder / name
                d.mkdir()
                if name not in skip:
                    np.savez(d / "weights.npz", val_accuracy=accuracy(method, ci, s))


def _scan(tmp_path, *args):
    cmd = ["bash", os.path.join(ROOT, "scripts", "scan_peaks.sh"), "-o", str(tmp_path / "scan"), "--dry-run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def test_scan_plan_seed_range_and_cells(tmp_path):
    r = _scan(tmp_path, "-s", "13-14", "--widths", "5", "--wis", "1e-6", "--gammas", "1e-5", "-p", "1")
    assert r.returncode == 0, r.stderr
    outs = [line.split("--out ")[1].split()[0] for line in r.stdout.splitlines() if "--out" in line]
    names = sorted(os.path.basename(o) for o in outs)
    assert names == ["nested_w5_wi1e-6_g1e-5_s13", "nested_w5_wi1e-6_g1e-5_s14",
                     "plain_w5_wi1e-6_g1e-5_s13", "plain_w5_wi1e-6_g1e-5_s14"]
    assert all("network.seed=13" in line or "network.seed=14" in line for line in r.stdout.splitlines() if line)


@pytest.mark.parametrize("args, message", [
    (["-s", "5-2"], "range A-B with A <= B, got '5-2'"),
    (["-s", "x"], "got 'x'"),
    (["--wis", "0 tiny"], "'tiny' is not a non-negative number"),
    (["--gammas", "-1"], "'-1' is not a non-negative number"),
])
def test_scan_rejects_bad_options(tmp_path, args, message):
    r = _scan(tmp_path, *args)
    assert r.returncode == 2
    assert message in r.stderr


def test_stats_match_numpy():
    values = [80.0, 91.5, 88.0, float("nan"), 95.0]
    mean, median, mx, mn, std = summarize_scan.stats(values)
    finite = np.array([80.0, 91.5, 88.0, 95.0])
    assert_allclose([mean, median, mx, mn, std],
                    [finite.mean(), np.median(finite), 95.0, 80.0, np.std(finite, ddof=1)])


def test_seed_matrix_keeps_only_seeds_complete_for_both_methods(tmp_path):
    _fake_scan(tmp_path, lambda m, c, s: 80.0 + s + c, seeds=range(1, 6),
               skip={"plain_w8_wi0_g1e-7_s3"})
    runs = summarize_scan.load_scan(str(tmp_path))
    seeds, m = summarize_scan.seed_matrix(runs, 8)
    assert seeds == [1, 2, 4, 5]
    assert m["nested"].shape == m["plain"].shape == (4, len(CELLS))
    assert_allclose(m["nested"][:, 1], [82.0, 83.0, 85.0, 86.0])


def test_bootstrap_is_paired_over_seeds(tmp_path):
    # nested is plain + 3 points for every seed: a paired bootstrap has no doubt about the difference,
    # while each method's own mean varies with the seeds drawn
    rng = np.random.default_rng(1)
    base = {s: 70.0 + 25.0 * rng.random() for s in range(1, 13)}
    _fake_scan(tmp_path, lambda m, c, s: base[s] + (3.0 if m == "nested" else 0.0) + 0.1 * c, seeds=range(1, 13))
    runs = summarize_scan.load_scan(str(tmp_path))
    seeds, m = summarize_scan.seed_matrix(runs, 8)
    ci = summarize_scan.seed_bootstrap(m["nested"], m["plain"], np.mean, resamples=2000)
    assert_allclose(ci["a-b"], (3.0, 3.0), atol=1e-9)
    lo, hi = ci["b"]
    assert lo < m["plain"].mean() < hi and hi - lo > 2.0


def test_summary_reports_intervals_and_goal_checks(tmp_path):
    _fake_scan(tmp_path, lambda m, c, s: (90.0 if m == "nested" else 85.0) + (s % 3), seeds=range(1, 7))
    text = summarize_scan.summarize(str(tmp_path), str(tmp_path), plots=False)
    assert "| 8 | mean | 6 | 91.0 [" in text            # nested: 90 + mean of (s % 3) over 1..6 = 91
    assert "| +5.0 [+5.0, +5.0] |" in text               # the paired difference is exactly 5
    assert "nested mean > non-nested mean (91.0% vs 86.0%): yes" in text
    assert "nested mean >= paper's 92.3%: **no**" in text
    with open(tmp_path / "summary.md") as f:
        assert "How sure: bootstrap over seeds" in f.read()


@pytest.mark.parametrize("schedule, starts, m, plain_iters, flagged", [
    ([200, 125, 75], 1, 40, 188, False),        # the paper's schedules
    ([80, 125, 75], 4, 40, 188, False),         # 4 coarse starts of 40 iterations: the same coarse work
    ([200, 125, 75], 4, 40, 188, True),         # the starts' work on top of the paper's
    ([20, 12, 8], 1, 40, 19, True),             # --quick
])
def test_settings_line_flags_other_amounts_of_work(tmp_path, schedule, starts, m, plain_iters, flagged):
    import json
    _fake_scan(tmp_path, lambda meth, c, s: 90.0, seeds=[1])
    for d in tmp_path.iterdir():
        cfg = {"nested": {"schedule": schedule if d.name.startswith("nested") else [], "starts": starts,
                          "start_iterations": m},
               "network": {"layers": 64}, "optimizer": {"iterations": plain_iters},
               "braid": {"iterations": 2}, "data": {"seed": 0}, "run": {"ranks": 1}}
        (d / "config.json").write_text(json.dumps(cfg))
    line = summarize_scan.settings_line(summarize_scan.load_scan(str(tmp_path)))
    assert ("Not the paper's amount of work" in line) == flagged, line
    assert ("4 coarse starts of 40 iterations" in line) == (starts == 4)


def test_scan_digits_is_the_digits_study(tmp_path):
    cmd = ["bash", os.path.join(ROOT, "scripts", "scan_digits.sh"), "-o", str(tmp_path / "scan"), "--dry-run",
           "-s", "2", "-p", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "--out" in line]
    names = sorted(os.path.basename(line.split("--out ")[1].split()[0]) for line in lines)
    assert names == ["nested_w4_wi0_g1e-7_s1", "nested_w4_wi0_g1e-7_s2", "plain_w4_wi0_g1e-7_s1", "plain_w4_wi0_g1e-7_s2"]
    assert all("output.validate_every=1" in line for line in lines)
    assert sum("examples/digits.toml" in line for line in lines) == 2
    assert sum("examples/digits_plain.toml" in line for line in lines) == 2


def _history(folder, layers, steps, accuracy):
    """history.csv with cumulative layer steps and per-iteration validation accuracy."""
    rows = ["iteration,layers,layer_steps,work_units_counted,val_accuracy"]
    for it, (n, st, acc) in enumerate(zip(layers, np.cumsum(steps), accuracy)):
        rows.append(f"{it},{n},{st},{it},{acc}")
    (folder / "history.csv").write_text("\n".join(rows) + "\n")


def test_digits_summary_compares_at_equal_work_without_the_paper(tmp_path):
    import json
    # non-nested: 100 steps per iteration, 10 iterations, accuracy 10 * iteration; nested: 8 iterations
    # at 25 steps (a quarter of the depth), then 3 at 100: its end is at (8 * 25 + 3 * 100) / 100 = 5 units
    for s in (1, 2, 3):
        for method in ("nested", "plain"):
            d = tmp_path / f"{method}_w4_wi0_g1e-7_s{s}"
            d.mkdir()
            cfg = {"data": {"dataset": "digits", "seed": 0}, "network": {"layers": 32}, "braid": {"iterations": 2},
                   "nested": {"schedule": [8, 3] if method == "nested" else []}, "optimizer": {"iterations": 10}}
            (d / "config.json").write_text(json.dumps(cfg))
            if method == "plain":
                _history(d, [32] * 11, [0] + [100] * 10, [10.0 * i for i in range(11)])
                np.savez(d / "weights.npz", val_accuracy=95.0)
            else:
                _history(d, [8] * 9 + [32] * 3, [0] + [25] * 8 + [100] * 3, [60.0 + s] * 12)
                np.savez(d / "weights.npz", val_accuracy=90.0 + s)
    runs = summarize_scan.load_scan(str(tmp_path))
    assert summarize_scan.study(runs) == "digits" and summarize_scan.reference(runs) == {}
    assert summarize_scan.work_marks(runs, "counted") == (1, 2, 5, 10)
    table = summarize_scan.equal_work_table(runs, "counted")
    assert "| 4 | 0 | 1e-7 | 2 | 92.0% | 5.0 | 50.0% | 95.0% | 10.0 | +42.0 |" in table
    grid = np.array([0.0, 0.5, 2.0, 5.0, 7.0])
    assert_allclose(summarize_scan.band(runs, 4, "plain", grid, "counted")[0], [0.0, 0.0, 20.0, 50.0, 70.0])
    assert np.isnan(summarize_scan.band(runs, 4, "nested", grid, "counted")[0, -1])   # after its end
    text = summarize_scan.summarize(str(tmp_path), str(tmp_path), plots=False)
    assert "paper" not in text and "| 4 | nested | **ours** | 3 | 92.0% |" in text
