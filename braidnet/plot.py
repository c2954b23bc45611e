"""Figures of training runs against work units, as the paper's Figures 4 and 5 (``braidnet plot``).

Two panels: validation accuracy and training loss against work units.  A nested run is drawn level by
level, each depth in its own colour (the same colour for the same depth in every run), a non-nested
run as one grey line; several runs of one kind differ by line style.  matplotlib is imported only
here, with the Agg backend (no display needed).
"""
from __future__ import annotations

import itertools
import os
from typing import List, Optional, Sequence

import numpy as np

from braidnet.compare import Run, common_unit, load_run

_STYLES = ("-", "--", ":", "-.")
_PLAIN_GREYS = ("0.15", "0.45", "0.65")


def plot_runs(runs: Sequence[Run], out: str, units: str = "counted", title: Optional[str] = None) -> str:
    """Draw the runs into ``out`` (PNG, PDF, ... by its extension); returns ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({int(d) for r in runs if r.nested for d in r.columns["layers"]})
    cmap = plt.get_cmap("viridis")
    colour = {d: cmap(0.15 + 0.7 * i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    nested_style, plain_grey = itertools.cycle(_STYLES), itertools.cycle(_PLAIN_GREYS)
    for run in runs:
        w = run.work(units)
        if run.nested:
            style = next(nested_style)
            layers = run.columns["layers"]
            for d in depths:
                rows = np.nonzero(layers == d)[0]
                if rows.size == 0:
                    continue
                # start each level where the previous one ended, so the curve is unbroken
                seg = np.concatenate([[rows[0] - 1], rows]) if rows[0] > 0 else rows
                for ax, col in zip(axes, ("val_accuracy", "loss")):
                    y = run.columns[col][seg]
                    ok = np.isfinite(y) & np.isfinite(w[seg])
                    ax.plot(w[seg][ok], y[ok], style, color=colour[d], lw=1.6,
                            label=f"{run.name}: {d} layers")
        else:
            grey = next(plain_grey)
            for ax, col in zip(axes, ("val_accuracy", "loss")):
                y = run.columns[col]
                ok = np.isfinite(y) & np.isfinite(w)
                ax.plot(w[ok], y[ok], "-", color=grey, lw=1.6,
                        label=f"{run.name}: non-nested, {int(run.columns['layers'][-1])} layers")
    xlabel = "work units (" + ("wall clock" if units == "wall" else "counted layer steps") + ")"
    axes[0].set_ylabel("validation accuracy (%)")
    axes[1].set_ylabel("training loss")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        fig.savefig(out, dpi=120)
    except OSError as e:
        raise ValueError(f"cannot write the figure {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return out


def plot(paths: Sequence[str], out: Optional[str] = None, units: str = "counted") -> str:
    """Load the run folders and plot them; default output: FIRST_RUN/work_units.png.

    A missing history is a FileNotFoundError, a damaged one (:func:`braidnet.compare.load_run`) or an
    unwritable figure a ValueError with one line naming the file (``braidnet plot`` prints it).
    """
    runs: List[Run] = [load_run(p) for p in paths]
    common_unit(runs, units)
    out = out or os.path.join(paths[0], "work_units.png")
    return plot_runs(runs, out, units)
