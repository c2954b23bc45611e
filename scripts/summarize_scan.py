#!/usr/bin/env python
"""Summarise a scan of scripts/scan_peaks.sh: the peaks study (the paper's Figure 3) or the digits study.

Reads every run folder ``<method>_w<width>_wi<w_i>_g<gamma>_s<seed>`` of SCAN_DIR and writes into
SCAN_DIR (or --out):

* ``summary.md``: the statistics of the final (exact) validation accuracy per width and method (for
  peaks beside the paper's table, docs/design.md section 8), the goal checks, the accuracy at equal
  work seed by seed, a per-cell breakdown, timings, and the failed, unfinished and missing runs;
* ``boxplot.png``: box plots of the final validation accuracy (peaks: with the paper's min/median/max);
* ``accuracy_vs_work.png``: validation accuracy against work units of the best and the median run of
  every width and method;
* ``accuracy_vs_work_band.png``: the median over the runs of every width and method against work units,
  with the band of the middle half and of all runs (and a panel zoomed on the top of the range).

The study is the runs' data set (config.json's data.dataset): the paper's numbers are shown for peaks only.

``summary.md`` also gives 95% bootstrap intervals (over seeds: the independent starts) of the mean and
the std of each method and of their difference, to tell a real gap from sampling noise.

The statistics table is printed as well.  std is the sample standard deviation (ddof = 1).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

RUN_NAME = re.compile(r"^(nested|plain)_w(\d+)_wi([^_]+)_g([^_]+)_s(\d+)$")
METHOD_LABEL = {"nested": "nested", "plain": "non-nested"}

# docs/design.md section 8 (the paper's Figure 3 table): mean, median, max, min, std in %, 48 runs each
PAPER = {
    (5, "nested"): (86.7, 88.0, 97.0, 66.0, 7.69),
    (5, "plain"): (85.0, 88.5, 95.0, 20.0, 11.7),
    (8, "nested"): (92.3, 94.0, 99.0, 72.5, 5.18),
    (8, "plain"): (90.7, 91.8, 96.5, 57.0, 6.08),
}
PAPER_RUNS = 48
PEAKS_DATASETS = ("peaks", "lpt_text")      # the published peaks files are the same study
STAT_NAMES = ("mean", "median", "max", "min", "std")


@dataclass
class RunInfo:
    name: str
    method: str
    width: int
    wi: str
    gamma: str
    seed: int
    path: str
    status: str = "missing"            # done | failed | unfinished | missing
    accuracy: float = float("nan")     # final exact validation accuracy (weights.npz)
    seconds: float = float("nan")      # training time (history.csv's last time; continues over a resume)
    wall: float = float("nan")         # wall time of the last attempt incl. start-up (timings.tsv)
    reason: str = ""
    dataset: str = ""                  # config.json's data.dataset ("" without one)
    history: Dict[str, np.ndarray] = field(default_factory=dict)


# ---- reading ------------------------------------------------------------------------------------

def _float(text: Optional[str]) -> float:
    try:
        return float(text) if text not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def read_history(path: str) -> Dict[str, np.ndarray]:
    """history.csv as float columns ({} if absent or empty)."""
    hist = os.path.join(path, "history.csv")
    if not os.path.exists(hist):
        return {}
    with open(hist, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([_float(r.get(k)) for r in rows]) for k in rows[0]}


def read_timings(scan: str) -> Dict[str, float]:
    """Wall seconds of each run's successful attempt (mpiexec start to end; a resumed run's last part)."""
    path = os.path.join(scan, "timings.tsv")
    out: Dict[str, float] = {}
    if not os.path.exists(path):
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row.get("rc") == "0":
                out[row["run"]] = _float(row.get("seconds"))
    return out


def final_accuracy(path: str) -> float:
    try:
        with np.load(os.path.join(path, "weights.npz")) as z:
            return float(z["val_accuracy"]) if "val_accuracy" in z.files else float("nan")
    except (OSError, ValueError, KeyError):
        return float("nan")


def read_dataset(path: str) -> str:
    """data.dataset of a run folder's config.json ("" without one)."""
    import json
    try:
        with open(os.path.join(path, "config.json")) as f:
            return str(json.load(f).get("data", {}).get("dataset", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def study(runs: List[RunInfo]) -> str:
    """The scan's data set: "peaks" (also for runs without config.json: the older scans), "digits", ..."""
    names = {"peaks" if r.dataset in PEAKS_DATASETS else r.dataset for r in runs if r.dataset}
    return names.pop() if len(names) == 1 else ("peaks" if not names else "+".join(sorted(names)))


def reference(runs: List[RunInfo]) -> Dict[Tuple[int, str], Tuple[float, ...]]:
    """The paper's statistics to show beside ours: only for the peaks study."""
    return PAPER if study(runs) == "peaks" else {}


def load_scan(scan: str) -> List[RunInfo]:
    """Every run folder of the scan and every run its manifest plans, with its status."""
    names = {d for d in os.listdir(scan) if RUN_NAME.match(d) and os.path.isdir(os.path.join(scan, d))}
    manifest = os.path.join(scan, "scan.manifest")
    if os.path.exists(manifest):
        with open(manifest) as f:
            names |= {line.strip() for line in f if RUN_NAME.match(line.strip())}
    timings = read_timings(scan)
    runs = []
    for name in sorted(names):
        m, w, wi, g, s = RUN_NAME.match(name).groups()
        r = RunInfo(name, m, int(w), wi, g, int(s), os.path.join(scan, name))
        if os.path.isdir(r.path):
            r.history = read_history(r.path)
            r.dataset = read_dataset(r.path)
            failed = os.path.join(r.path, "FAILED")
            if os.path.exists(os.path.join(r.path, "weights.npz")):
                r.status, r.accuracy = "done", final_accuracy(r.path)
                if not math.isfinite(r.accuracy):
                    r.status, r.reason = "failed", "weights.npz without a final validation accuracy"
            elif os.path.exists(failed):
                with open(failed) as f:
                    rc = f.read().strip()
                r.status = "failed"
                r.reason = {"3": "training diverged (exit 3)", "2": "configuration error (exit 2)"}.get(
                    rc, f"exit status {rc}")
            else:
                r.status = "unfinished"
                n = len(r.history.get("iteration", []))
                r.reason = f"no weights.npz yet ({n} history rows" + \
                    (", checkpoint.npz: resumable)" if os.path.exists(os.path.join(r.path, "checkpoint.npz")) else ")")
        else:
            r.reason = "planned (scan.manifest) but never started"
        t = r.history.get("time")
        r.seconds = float(t[-1]) if t is not None and len(t) else float("nan")
        r.wall = timings.get(name, float("nan"))
        runs.append(r)
    return runs


# ---- statistics -----------------------------------------------------------------------------------

def stats(values: List[float]) -> Tuple[float, ...]:
    """mean, median, max, min, std (ddof 1; NaN for fewer than 2 values) of finite values."""
    a = np.array([v for v in values if math.isfinite(v)])
    if a.size == 0:
        return (float("nan"),) * 5
    std = float(np.std(a, ddof=1)) if a.size > 1 else float("nan")
    return float(a.mean()), float(np.median(a)), float(a.max()), float(a.min()), std


def groups(runs: List[RunInfo]) -> List[Tuple[int, str]]:
    keys = {(r.width, r.method) for r in runs} | set(reference(runs))
    return sorted(keys, key=lambda k: (k[0], k[1] != "nested"))


def pct(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}%" if math.isfinite(x) else "–"


def stats_table(runs: List[RunInfo]) -> str:
    """Markdown: our statistics and the paper's (peaks), one row each per width and method."""
    paper = reference(runs)
    lines = ["| width | method | source | runs | mean | median | max | min | std |",
             "|---|---|---|---|---|---|---|---|---|"]
    for width, method in groups(runs):
        done = [r.accuracy for r in runs if (r.width, r.method) == (width, method) and r.status == "done"]
        planned = sum(1 for r in runs if (r.width, r.method) == (width, method))
        ours = stats(done)
        runs_cell = f"{len(done)}" + (f" of {planned}" if planned != len(done) else "")
        lines.append(f"| {width} | {METHOD_LABEL[method]} | **ours** | {runs_cell} | "
                     + " | ".join(pct(v, 2 if k == 4 else 1) for k, v in enumerate(ours)) + " |")
        if (width, method) in paper:
            p = paper[(width, method)]
            lines.append(f"| {width} | {METHOD_LABEL[method]} | paper | {PAPER_RUNS} | "
                         + " | ".join(pct(v, 2 if k == 4 else 1) for k, v in enumerate(p)) + " |")
    return "\n".join(lines)


def goal_checks(runs: List[RunInfo]) -> str:
    """The issue's goal per width: nested beats non-nested in mean and spread, nested mean >= paper."""
    paper = reference(runs)
    lines = []
    for width in sorted({r.width for r in runs}):
        acc = {m: [r.accuracy for r in runs if r.width == width and r.method == m and r.status == "done"]
               for m in ("nested", "plain")}
        n, p = stats(acc["nested"]), stats(acc["plain"])

        def verdict(ok: Optional[bool]) -> str:
            return "n/a" if ok is None else ("yes" if ok else "**no**")

        def cmp(a: float, b: float, op) -> Optional[bool]:
            return op(a, b) if math.isfinite(a) and math.isfinite(b) else None

        line = (f"- width {width}: nested mean > non-nested mean "
                f"({pct(n[0])} vs {pct(p[0])}): {verdict(cmp(n[0], p[0], float.__gt__))}; "
                f"nested std < non-nested std ({pct(n[4], 2)} vs {pct(p[4], 2)}): "
                f"{verdict(cmp(n[4], p[4], float.__lt__))}; nested min > non-nested min "
                f"({pct(n[3])} vs {pct(p[3])}): {verdict(cmp(n[3], p[3], float.__gt__))}")
        if (width, "nested") in paper:
            ref = paper[(width, "nested")][0]
            line += f"; nested mean >= paper's {pct(ref)}: {verdict(cmp(n[0], ref, float.__ge__))}"
        lines.append(line)
    return "\n".join(lines)


def cell_table(runs: List[RunInfo]) -> str:
    """Markdown: accuracy per (width, w_i, gamma, method) cell."""
    lines = ["| width | w_i | gamma | method | runs | mean | median | min | max |",
             "|---|---|---|---|---|---|---|---|---|"]
    cells = sorted({(r.width, r.wi, r.gamma, r.method) for r in runs},
                   key=lambda c: (c[0], float(c[1]), -float(c[2]), c[3] != "nested"))
    for width, wi, gamma, method in cells:
        acc = [r.accuracy for r in runs if (r.width, r.wi, r.gamma, r.method) == (width, wi, gamma, method)
               and r.status == "done"]
        mean, med, mx, mn, _ = stats(acc)
        lines.append(f"| {width} | {wi} | {gamma} | {METHOD_LABEL[method]} | {len(acc)} | {pct(mean)} | "
                     f"{pct(med)} | {pct(mn)} | {pct(mx)} |")
    return "\n".join(lines)


def seed_matrix(runs: List[RunInfo], width: int) -> Tuple[List[int], Dict[str, np.ndarray]]:
    """Final accuracies of one width as a (seed, cell) array per method, over the seeds finished in
    every cell by both methods.

    A seed is one independent start: its (w_i, gamma) cells share the opening and classifier
    initialisation and differ by residual weights of at most 1e-6, so resampling must draw whole seeds,
    and the same seeds for both methods (which start from the same initialisation: paired).
    """
    sel = [r for r in runs if r.width == width]
    cells = sorted({(r.wi, r.gamma) for r in sel})
    acc = {(r.method, r.seed, r.wi, r.gamma): r.accuracy for r in sel if r.status == "done"}
    seeds = sorted(s for s in {r.seed for r in sel}
                   if all((m, s) + c in acc for m in ("nested", "plain") for c in cells))
    return seeds, {m: np.array([[acc[(m, s) + c] for c in cells] for s in seeds]).reshape(len(seeds), len(cells))
                   for m in ("nested", "plain")}


def seed_bootstrap(a: np.ndarray, b: np.ndarray, statistic, resamples: int = 10000, seed: int = 0
                   ) -> Dict[str, Tuple[float, float]]:
    """95% percentile intervals of statistic(a), statistic(b) and statistic(a) - statistic(b) when
    whole rows (seeds) are resampled, the same rows for a and b (a paired, clustered bootstrap).

    ``statistic(values, axis)`` reduces along ``axis`` (as np.mean does)."""
    from scipy.stats import bootstrap

    def of(x, rows, axis):      # rows: resampled seed indices, (..., n) -> (..., n * cells) values
        rows = np.moveaxis(rows.astype(int), axis, -1)
        v = x[rows]
        return statistic(v.reshape(v.shape[:-2] + (-1,)), axis=-1)

    parts = {"a": lambda rows, axis=-1: of(a, rows, axis), "b": lambda rows, axis=-1: of(b, rows, axis),
             "a-b": lambda rows, axis=-1: of(a, rows, axis) - of(b, rows, axis)}
    out = {}
    for key, stat in parts.items():
        res = bootstrap((np.arange(a.shape[0]),), stat, n_resamples=resamples, vectorized=True,
                        method="percentile", random_state=np.random.default_rng(seed))
        out[key] = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return out


def _estimate(value: float, interval: Tuple[float, float], signed: bool = False) -> str:
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"{f.format(value)} [{f.format(interval[0])}, {f.format(interval[1])}]"


def uncertainty_table(runs: List[RunInfo]) -> str:
    """Markdown: 95% intervals of mean and std per width and method, and of nested minus non-nested,
    from a bootstrap over seeds; the paper's value beside each (peaks)."""
    ref = reference(runs)
    lines = ["| width | statistic | seeds | nested | non-nested | nested − non-nested |"
             + (" paper nested | paper non-nested |" if ref else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if ref else "")]
    stat_fns = {"mean": (np.mean, 0), "std": (lambda x, axis=None: np.std(x, ddof=1, axis=axis), 4)}
    for width in sorted({r.width for r in runs}):
        seeds, m = seed_matrix(runs, width)
        if len(seeds) < 3:
            continue
        for name, (fn, column) in stat_fns.items():
            ci = seed_bootstrap(m["nested"], m["plain"], fn)
            est = {key: float(fn(m[key].ravel())) for key in ("nested", "plain")}
            paper = [ref.get((width, meth), (float("nan"),) * 5)[column] for meth in ("nested", "plain")]
            digits = 2 if name == "std" else 1
            lines.append(f"| {width} | {name} | {len(seeds)} | {_estimate(est['nested'], ci['a'])} | "
                         f"{_estimate(est['plain'], ci['b'])} | "
                         f"{_estimate(est['nested'] - est['plain'], ci['a-b'], True)} |"
                         + (f" {pct(paper[0], digits)} | {pct(paper[1], digits)} |" if ref else ""))
    return "\n".join(lines)


def timing_table(runs: List[RunInfo]) -> str:
    """Markdown: training time (history) and wall time (timings.tsv) per run, per width and method."""
    lines = ["| width | method | runs | mean train s | median train s | max train s | mean wall s | total wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for width, method in groups(runs):
        sel = [r for r in runs if (r.width, r.method) == (width, method) and r.status == "done"]
        t = [r.seconds for r in sel if math.isfinite(r.seconds)]
        w = [r.wall for r in sel if math.isfinite(r.wall)]
        if not t:
            continue
        wall = (f"{np.mean(w):.1f} | {np.sum(w):.0f}") if w else "– | –"
        lines.append(f"| {width} | {METHOD_LABEL[method]} | {len(t)} | {np.mean(t):.1f} | {np.median(t):.1f} | "
                     f"{np.max(t):.1f} | {wall} |")
    return "\n".join(lines)


def settings_line(runs: List[RunInfo]) -> str:
    """What the runs were trained with (from one config.json per method): flags scans whose work differs
    from the paper's schedules."""
    import json
    parts, paper_work = [], True
    for method in ("nested", "plain"):
        for r in runs:
            cfg_path = os.path.join(r.path, "config.json")
            if r.method == method and os.path.exists(cfg_path):
                with open(cfg_path) as f:
                    cfg = json.load(f)
                n = cfg["nested"]
                if method == "nested":
                    starts, m = n.get("starts", 1), n.get("start_iterations", 0)
                    what = f"schedule {n['schedule']} on {cfg['network']['layers']} finest layers"
                    if starts > 1:
                        what += f", {starts} coarse starts of {m} iterations (braidnet.starts)"
                    # the coarse starts' extra work counts against the coarsest level's 200 iterations
                    coarse = n["schedule"][0] + (starts - 1) * m if n["schedule"] else 0
                    paper_work &= coarse == 200 and list(n["schedule"][1:]) == [125, 75]
                else:
                    what = f"{cfg['optimizer']['iterations']} iterations on {cfg['network']['layers']} layers"
                    paper_work &= cfg["optimizer"]["iterations"] == 188
                ranks = cfg.get("run", {}).get("ranks", "?")
                parts.append(f"{METHOD_LABEL[method]}: {what}, braid.iterations = {cfg['braid']['iterations']}, "
                             f"ranks = {ranks}, data.seed = {cfg['data']['seed']}")
                break
    line = "; ".join(parts) or "(no config.json found)"
    if parts and not paper_work and reference(runs):
        line += ".  **Not the paper's amount of work** ((200, 125, 75) and 188 iterations): not comparable with its table"
    return line


# ---- figures --------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def boxplot(runs: List[RunInfo], out: str) -> Optional[str]:
    keys = [k for k in groups(runs) if any(r.status == "done" and (r.width, r.method) == k for r in runs)]
    if not keys:
        return None
    paper = reference(runs)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    data = [[r.accuracy for r in runs if r.status == "done" and (r.width, r.method) == k] for k in keys]
    pos = np.arange(1, len(keys) + 1)
    colours = ["tab:blue" if m == "nested" else "tab:orange" for _, m in keys]
    bp = ax.boxplot(data, positions=pos, widths=0.45, patch_artist=True, showmeans=True, showfliers=False,
                    meanprops=dict(marker="^", markerfacecolor="green", markeredgecolor="green"))
    for patch, c in zip(bp["boxes"], colours):
        patch.set_facecolor(c)
        patch.set_alpha(0.35)
    rng = np.random.default_rng(0)
    for x, d, c in zip(pos, data, colours):   # every network as a dot (a scan has few)
        ax.scatter(x + rng.uniform(-0.08, 0.08, len(d)), d, s=12, color=c, zorder=3)
    for x, k in zip(pos, keys):               # the paper's min, median, max beside each box
        if k in paper:
            mean, med, mx, mn, _ = paper[k]
            ax.plot([x + 0.33] * 2, [mn, mx], color="0.4", lw=1)
            ax.scatter([x + 0.33], [med], marker="_", s=200, color="k", zorder=3)
            ax.scatter([x + 0.33], [mean], marker="D", s=18, color="k", zorder=3)
    ax.set_xticks(pos)
    ax.set_xticklabels([f"width {w}\n{METHOD_LABEL[m]}\n({len(d)} runs)" for (w, m), d in zip(keys, data)])
    ax.set_ylabel("final validation accuracy (%)")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="^", ls="", color="green", label="ours: mean")]
    if paper:
        handles += [Line2D([], [], color="0.4", label="paper: min to max"),
                    Line2D([], [], marker="_", ms=12, ls="", color="k", label="paper: median"),
                    Line2D([], [], marker="D", ms=4, ls="", color="k", label="paper: mean")]
    ax.legend(handles=handles, fontsize=8, loc="lower left")
    ax.set_title(f"{study(runs).capitalize()} scan: final validation accuracy "
                 f"(boxes: {'ours' if paper else 'box plots'}, dots: every network)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def common_work(run: RunInfo, unit_steps: Optional[float], column: str) -> np.ndarray:
    """Work units of a run's rows: counted layer steps in the unit given (one non-nested iteration),
    else the run's own column (wall clock, or a history without layer steps)."""
    h = run.history
    if column == "work_units_counted" and unit_steps and "layer_steps" in h:
        return h["layer_steps"] / unit_steps
    return h.get(column, h.get("work_units", h["iteration"]))


def plain_unit(runs: List[RunInfo], width: int) -> Optional[float]:
    """Weighted layer steps of one non-nested iteration at this width (the paper's work unit): the
    median over the finished non-nested runs (their line searches differ a little)."""
    units = [float(r.history["layer_steps"][-1] / r.history["iteration"][-1]) for r in runs
             if r.method == "plain" and r.width == width and r.status == "done" and "layer_steps" in r.history
             and len(r.history["iteration"]) and r.history["iteration"][-1] > 0]
    return float(np.median(units)) if units else None


def work_axis(runs: List[RunInfo], width: int, units: str) -> Tuple[Optional[float], str]:
    """(unit, history column) of work at a width: counted layer steps in one non-nested iteration's
    steps, or the wall-clock column (and no unit)."""
    if units == "counted":
        return plain_unit(runs, width), "work_units_counted"
    return None, "work_units"


def pick(runs: List[RunInfo], width: int, method: str) -> Dict[str, RunInfo]:
    """The best and the median (by final accuracy) finished run of a width and method."""
    done = sorted((r for r in runs if r.status == "done" and r.width == width and r.method == method
                   and r.history), key=lambda r: r.accuracy)
    if not done:
        return {}
    return {"best": done[-1], "median": done[(len(done) - 1) // 2]}


def work_curves(runs: List[RunInfo], out: str, units: str) -> Optional[str]:
    widths = sorted({r.width for r in runs if r.status == "done"})
    if not widths:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(widths), figsize=(6.2 * len(widths), 4.4), squeeze=False)
    for ax, width in zip(axes[0], widths):
        unit, column = work_axis(runs, width, units)
        for method, colour in (("nested", "tab:blue"), ("plain", "tab:orange")):
            for role, style in (("best", "-"), ("median", "--")):
                r = pick(runs, width, method).get(role)
                if r is None or (role == "median" and r is pick(runs, width, method)["best"]):
                    continue
                w, acc = common_work(r, unit, column), r.history["val_accuracy"]
                ok = np.isfinite(w) & np.isfinite(acc)
                ax.plot(w[ok], acc[ok], style, color=colour, lw=1.4,
                        label=f"{role} {METHOD_LABEL[method]} ({r.accuracy:.1f}%: {r.name})")
                ax.scatter([w[ok][-1]], [r.accuracy], color=colour, s=18, zorder=3)
                if method == "nested" and role == "best":   # where the network was refined
                    for i in np.nonzero(np.diff(r.history["layers"]) != 0)[0]:
                        ax.axvline(w[i + 1], color=colour, ls=":", lw=0.8, alpha=0.6)
        ax.set_title(f"width {width}")
        ax.set_xlabel("work units (" + ("counted layer steps; 1 = a non-nested iteration" if unit
                                        else "wall clock" if units == "wall" else "run's own units") + ")")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Validation accuracy against work (dotted: nested refinements; dot: final exact accuracy)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def accuracy_at(run: RunInfo, unit: Optional[float], column: str, work: float) -> float:
    """Validation accuracy of the last validated row at or before ``work`` units (NaN if none)."""
    w, acc = common_work(run, unit, column), run.history.get("val_accuracy")
    if acc is None:
        return float("nan")
    rows = np.nonzero(np.isfinite(acc) & np.isfinite(w) & (w <= work))[0]
    return float(acc[rows[-1]]) if rows.size else float("nan")


def end_work(run: RunInfo, unit: Optional[float], column: str) -> float:
    """Work units of a run's last row."""
    w = common_work(run, unit, column)
    return float(w[-1]) if len(w) else float("nan")


def work_marks(runs: List[RunInfo], units: str) -> Tuple[float, ...]:
    """Where work_table reports: the paper's marks for peaks; otherwise 1, 2, 5, 10, 20, 50, ... up to the
    longest run and, among them, the nested runs' median work at their end (rounded down)."""
    if reference(runs):
        return (10, 25, 50, 100, 150, 185)
    done = [r for r in runs if r.status == "done" and r.history]
    ends = {m: [end_work(r, *work_axis(runs, r.width, units)) for r in done if r.method == m]
            for m in ("nested", "plain")}
    longest = max((e for v in ends.values() for e in v if math.isfinite(e)), default=0.0)
    marks = {m * 10 ** k for k in range(6) for m in (1, 2, 5) if m * 10 ** k <= longest}
    nested_end = [e for e in ends["nested"] if math.isfinite(e)]
    if nested_end:
        marks.add(math.floor(float(np.median(nested_end))))
    return tuple(sorted(m for m in marks if m > 0))


def work_table(runs: List[RunInfo], units: str, marks: Optional[Tuple[float, ...]] = None) -> str:
    """Markdown: mean validation accuracy (the per-iteration one, d MGRIT iterations) at given work."""
    marks = marks or work_marks(runs, units)
    lines = ["| width | method | " + " | ".join(f"{m} units" for m in marks) + " | units at the end |",
             "|---|---|" + "---|" * (len(marks) + 1)]
    for width, method in groups(runs):
        sel = [r for r in runs if (r.width, r.method) == (width, method) and r.status == "done" and r.history]
        if not sel:
            continue
        unit, column = work_axis(runs, width, units)
        cells = []
        for m in marks:
            a = [accuracy_at(r, unit, column, m) for r in sel]
            a = [x for x in a if math.isfinite(x)]
            cells.append(pct(float(np.mean(a))) if a else "–")
        ends = [float(common_work(r, unit, column)[-1]) for r in sel]
        lines.append(f"| {width} | {METHOD_LABEL[method]} | " + " | ".join(cells)
                     + f" | {np.mean(ends):.0f} ({np.min(ends):.0f}-{np.max(ends):.0f}) |")
    return "\n".join(lines)


def equal_work_table(runs: List[RunInfo], units: str) -> str:
    """Markdown, seed by seed: the nested run's final accuracy and work, the non-nested run of the same
    seed and cell at that work (its per-iteration validation accuracy, d MGRIT iterations) and at its own
    end (exact), and the difference at equal work; mean (the difference's with a 95% bootstrap interval
    over the rows) and std over the seeds below."""
    done = {(r.method, r.width, r.wi, r.gamma, r.seed): r for r in runs if r.status == "done" and r.history}
    lines = ["| width | w_i | gamma | seed | nested: final | nested: units | non-nested at those units | "
             "non-nested: final | non-nested: units | nested − non-nested at equal work |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    diffs: Dict[int, List[Tuple[float, ...]]] = {}
    for key in sorted((k for k in done if k[0] == "nested"), key=lambda k: (k[1], float(k[2]), -float(k[3]), k[4])):
        _, width, wi, gamma, seed = key
        plain = done.get(("plain",) + key[1:])
        if plain is None:
            continue
        nested = done[key]
        unit, column = work_axis(runs, width, units)
        work = end_work(nested, unit, column)
        at = accuracy_at(plain, unit, column, work)
        row = (nested.accuracy, work, at, plain.accuracy, end_work(plain, unit, column), nested.accuracy - at)
        diffs.setdefault(width, []).append(row)
        lines.append(f"| {width} | {wi} | {gamma} | {seed} | {pct(row[0])} | {row[1]:.1f} | {pct(row[2])} | "
                     f"{pct(row[3])} | {row[4]:.1f} | {row[5]:+.1f} |")
    for width, rows in sorted(diffs.items()):
        a = np.array(rows)
        for name, fn in (("mean", np.nanmean), ("std", lambda x, axis: np.nanstd(x, axis=axis, ddof=1))):
            if name == "std" and len(rows) < 2:
                continue
            v = fn(a, axis=0)
            diff = f"{v[5]:+.1f}" if name == "mean" else f"{v[5]:.1f}"
            d = a[:, 5:6][np.isfinite(a[:, 5])]
            if name == "mean" and len(d) >= 3:     # 95% interval over the seeds, as uncertainty_table
                lo, hi = seed_bootstrap(d, np.zeros_like(d), np.mean)["a"]
                diff += f" [{lo:+.1f}, {hi:+.1f}]"
            lines.append(f"| {width} | | | **{name}** | {pct(v[0])} | {v[1]:.1f} | {pct(v[2])} | {pct(v[3])} | "
                         f"{v[4]:.1f} | {diff} |")
    return "\n".join(lines)


def band(runs: List[RunInfo], width: int, method: str, grid: np.ndarray, units: str) -> np.ndarray:
    """Validation accuracy of every finished run of a width and method on the work grid (the last
    validated row at or before each point; NaN before the first and after the run's end)."""
    unit, column = work_axis(runs, width, units)
    sel = [r for r in runs if r.status == "done" and r.width == width and r.method == method and r.history]
    out = np.full((len(sel), grid.size), np.nan)
    for i, r in enumerate(sel):
        w, acc = common_work(r, unit, column), r.history["val_accuracy"]
        ok = np.isfinite(w) & np.isfinite(acc)
        idx = np.searchsorted(w[ok], grid, side="right") - 1
        inside = (idx >= 0) & (grid <= end_work(r, unit, column))
        out[i, inside] = acc[ok][idx[inside]]
    return out


def work_bands(runs: List[RunInfo], out: str, units: str) -> Optional[str]:
    """Median validation accuracy against work per width and method, with the band of the middle half
    and of all runs (where at least half of the runs have got that far), the final exact accuracies as
    dots and the nested refinements (median work) dotted; beside it the same zoomed on the top."""
    widths = sorted({r.width for r in runs if r.status == "done" and r.history})
    if not widths:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(widths), 2, figsize=(12, 4.4 * len(widths)), squeeze=False)
    for (ax_full, ax_zoom), width in zip(axes, widths):
        unit, column = work_axis(runs, width, units)
        sel = [r for r in runs if r.status == "done" and r.width == width and r.history]
        grid = np.linspace(0.0, max(end_work(r, unit, column) for r in sel), 600)
        finals = []
        for method, colour in (("nested", "tab:blue"), ("plain", "tab:orange")):
            mine = [r for r in sel if r.method == method]
            if not mine:
                continue
            a = band(runs, width, method, grid, units)
            enough = np.sum(np.isfinite(a), axis=0) >= max(1, math.ceil(len(mine) / 2))
            g = grid[enough]
            with np.errstate(all="ignore"):
                q = np.nanpercentile(a[:, enough], [0, 25, 50, 75, 100], axis=0)
            for ax in (ax_full, ax_zoom):
                ax.fill_between(g, q[0], q[4], color=colour, alpha=0.12, lw=0)
                ax.fill_between(g, q[1], q[3], color=colour, alpha=0.3, lw=0)
                ax.plot(g, q[2], "-", color=colour, lw=1.6,
                        label=f"{METHOD_LABEL[method]}: median of {len(mine)} runs")
                ax.scatter([end_work(r, unit, column) for r in mine], [r.accuracy for r in mine], color=colour,
                           s=14, zorder=3, edgecolors="k", linewidths=0.3)
            finals += [r.accuracy for r in mine]
            if method == "nested":       # where the networks were refined (median work over the runs)
                for k in range(max(len(np.unique(r.history["layers"])) for r in mine) - 1):
                    at = [common_work(r, unit, column)[np.nonzero(np.diff(r.history["layers"]) != 0)[0][k] + 1]
                          for r in mine if np.count_nonzero(np.diff(r.history["layers"])) > k]
                    for ax in (ax_full, ax_zoom):
                        ax.axvline(float(np.median(at)), color=colour, ls=":", lw=0.9, alpha=0.7)
        lo = max(0.0, math.floor(min(finals)) - 4.0)
        ax_zoom.set_ylim(lo, 100.0)
        xlabel = "work units (" + ("counted layer steps; 1 = a non-nested iteration" if unit
                                   else "wall clock" if units == "wall" else "run's own units") + ")"
        for ax, what in ((ax_full, ""), (ax_zoom, f", zoomed on {lo:.0f}-100%")):
            ax.set_title(f"width {width}{what}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation accuracy (%)")
            ax.grid(True, alpha=0.3)
        ax_full.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{study(runs).capitalize()}: validation accuracy against work (line: median; band: middle "
                 "half; light band: min to max; dots: final exact accuracy; dotted: nested refinements)",
                 fontsize=9.5)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ---- the report -----------------------------------------------------------------------------------

def problems(runs: List[RunInfo]) -> str:
    bad = [r for r in runs if r.status != "done"]
    if not bad:
        return "None: every planned run finished."
    lines = [f"{len(bad)} run(s) without a result (not in the statistics):", ""]
    lines += [f"- `{r.name}`: {r.status}: {r.reason}" for r in bad]
    return "\n".join(lines)


def summarize(scan: str, out: str, units: str = "counted", plots: bool = True) -> str:
    runs = load_scan(scan)
    if not runs:
        raise FileNotFoundError(f"no run folders <method>_w<W>_wi<WI>_g<G>_s<S> in {scan!r}")
    os.makedirs(out, exist_ok=True)
    figs = []
    if plots:
        figs = [f for f in (boxplot(runs, os.path.join(out, "boxplot.png")),
                            work_curves(runs, os.path.join(out, "accuracy_vs_work.png"), units),
                            work_bands(runs, os.path.join(out, "accuracy_vs_work_band.png"), units)) if f]
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "unfinished", "missing")}
    table, sure = stats_table(runs), uncertainty_table(runs)
    paper = bool(reference(runs))
    md = [f"# {study(runs).capitalize()} scan: {os.path.abspath(scan)}", "",
          f"{len(runs)} runs: {counts['done']} finished, {counts['failed']} failed, "
          f"{counts['unfinished']} unfinished, {counts['missing']} never started.  "
          f"Seeds: {len({r.seed for r in runs})}.", "",
          f"Settings: {settings_line(runs)}.", "",
          "## Final validation accuracy (exact forward solve)" + (", ours beside the paper's" if paper else ""), "",
          table, "",
          "std: sample standard deviation."
          + ("  The paper's row: docs/design.md section 8 (48 networks each)." if paper else ""), "",
          "## Goal checks", "", goal_checks(runs), "",
          "## How sure: bootstrap over seeds", "", sure, "",
          "Accuracy in percent points: estimate [95% interval].  The intervals come from resampling whole "
          "seeds (10000 times, percentile method), the same seeds for both methods, since the (w_i, gamma) "
          "cells of one seed share its initialisation; only seeds finished in every cell by both methods "
          "count.  A difference whose interval contains 0 is not resolved by this many seeds"
          + ("; a paper value outside our interval differs by more than our sampling noise (the paper's own "
             "noise, unknown to us, comes on top)." if paper else "."), "",
          "## Validation accuracy against work", "",
          "Mean over the finished runs of the per-iteration validation accuracy (a validation solve "
          f"with d MGRIT iterations) at the given work; work units {units}"
          + (" (weighted layer steps; 1 = one non-nested iteration at that width)" if units == "counted" else "")
          + ".", "", work_table(runs, units), "",
          "## At equal work, seed by seed", "",
          "Every nested run beside the non-nested run of the same seed and cell: its validation accuracy "
          "(per iteration, d MGRIT iterations) at the nested run's final work, and its own final one.", "",
          equal_work_table(runs, units), "",
          "## Per hyperparameter cell", "", cell_table(runs), "",
          "## Time per run", "", timing_table(runs), "",
          "train s: the history's last `time` (training only; a resumed run's includes the part before "
          "the interruption); wall s: `mpiexec` start to end of the last attempt (timings.tsv), incl. "
          "start-up, the nested runs' calibration and the final exact validation.", "",
          "## Runs without a result", "", problems(runs), ""]
    if figs:
        md += ["## Figures", ""] + [f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in figs] + [""]
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(md))
    return table + "\n\n" + goal_checks(runs) + "\n\n" + sure + "\n\n" + problems(runs)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="writes SUMMARY_DIR/summary.md, boxplot.png, accuracy_vs_work.png")
    p.add_argument("scan", metavar="SCAN_DIR", help="output folder of scripts/scan_peaks.sh")
    p.add_argument("--out", metavar="SUMMARY_DIR", help="where to write (default: SCAN_DIR)")
    p.add_argument("--units", choices=("counted", "wall"), default="counted",
                   help="work units of the curves: counted layer steps (default) or wall clock")
    p.add_argument("--no-plots", action="store_true", help="only summary.md")
    args = p.parse_args(argv)
    if not os.path.isdir(args.scan):
        print(f"summarize_scan.py: no folder {args.scan!r}", file=sys.stderr)
        return 2
    try:
        print(summarize(args.scan, args.out or args.scan, args.units, not args.no_plots))
    except FileNotFoundError as e:
        print(f"summarize_scan.py: {e}", file=sys.stderr)
        return 2
    print(f"\nwritten: {os.path.join(args.out or args.scan, 'summary.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
