"""``braidnet compare`` / ``braidnet plot`` on damaged run folders: one line naming the file, exit code 2.

The run folders are written here by hand, in the format of braidnet.runfolder (history.csv with
HISTORY_FIELDS, NaN written as ``nan``, a missing value as an empty cell), so no training is needed.
"""
import csv
import math
import os

import numpy as np
import pytest

from braidnet import cli
from braidnet.compare import load_run
from braidnet.runfolder import HISTORY_FIELDS


def _rows(layers, n, work0=0.0):
    rows = []
    for i in range(n):
        rows.append({"iteration": i, "level": 0, "layers": layers[i] if isinstance(layers, list) else layers,
                     "work_units": work0 + i + 1.0, "work_units_counted": work0 + i + 1.0,
                     "layer_steps": 100 * (i + 1), "primal_rnorm": 1e-3, "adjoint_rnorm": 1e-3,
                     "primal_iters": 2, "adjoint_iters": 2, "objective": 1.0 / (i + 1), "loss": 1.0 / (i + 1),
                     "grad_norm": 0.1, "step": 1.0, "ls_trials": 1, "train_accuracy": 50.0 + i,
                     "val_accuracy": 40.0 + 2 * i if i % 2 == 0 else math.nan, "time": 0.5 * (i + 1),
                     "version": "0.1.0", "core": "LLNL XBraid (/opt/xbraid)"})
    rows[1]["loss"] = None                 # written as an empty cell, read as NaN
    return rows


def _write(folder, rows, fields=HISTORY_FIELDS):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "history.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in fields} for r in rows)
    return path


@pytest.fixture
def runs(tmp_path):
    """(a nested run, a plain run, the plain run's history.csv path)."""
    nested = str(tmp_path / "nested")
    plain = str(tmp_path / "plain")
    _write(nested, _rows([8, 8, 8, 16, 16, 16], 6))
    return nested, plain, _write(plain, _rows(16, 6))


def _fails(capsys, argv, *fragments):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("braidnet: ") and "\n" not in err, captured.err
    for f in fragments:
        assert f in err, err
    assert "Traceback" not in captured.err
    return err


def test_good_files_compare_and_plot(runs, capsys, tmp_path):
    nested, plain, _ = runs
    assert cli.main(["compare", nested, plain]) == 0
    out = capsys.readouterr().out
    assert "nested" in out and "plain" in out and "work units" in out
    run = load_run(plain)
    assert math.isnan(run.columns["loss"][1]) and math.isnan(run.columns["val_accuracy"][1])
    assert run.columns["val_accuracy"][2] == 44.0 and not run.nested and load_run(nested).nested
    fig = str(tmp_path / "fig.png")
    assert cli.main(["plot", nested, plain, "--out", fig]) == 0
    with open(fig, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_older_history_without_optional_columns(runs, capsys):
    nested, plain, _ = runs
    fields = [f for f in HISTORY_FIELDS if f not in ("work_units_counted", "time")]
    _write(plain, _rows(16, 4), fields)
    assert np.all(np.isnan(load_run(plain).columns["work_units_counted"]))
    assert cli.main(["compare", nested, plain, "--units", "wall"]) == 0


def _damage_truncated_last_line(path):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[: text.rstrip("\n").rfind(",") - 3])        # cut inside the last row


def _damage_extra_field(path):
    with open(path) as f:
        lines = f.read().splitlines()
    lines[3] += ",7"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _damage_cell(path, line, column, text):
    with open(path) as f:
        lines = f.read().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = text
    lines[line - 1] = ",".join(cells)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _damage_drop_column(path, column):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = [k for k in rows[0] if k != column]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _replace(text):
    def damage(path):
        with open(path, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
    return damage


DAMAGE = [
    # (name, damage(path), fragments of the message besides the file name)
    ("truncated last line", _damage_truncated_last_line, ["line 7 has", f"fields, the header {len(HISTORY_FIELDS)}", "truncated"]),
    ("extra field", _damage_extra_field, [f"line 4 has {len(HISTORY_FIELDS) + 1} fields, the header {len(HISTORY_FIELDS)}"]),
    ("non-numeric value", lambda p: _damage_cell(p, 3, "loss", "abc"),
     ["line 3, column loss: 'abc' is not a number"]),
    ("non-numeric work", lambda p: _damage_cell(p, 5, "work_units_counted", "1.0.0"),
     ["line 5, column work_units_counted: '1.0.0' is not a number"]),
    ("missing layers column", lambda p: _damage_drop_column(p, "layers"), ["has no column layers"]),
    ("missing iteration column", lambda p: _damage_drop_column(p, "iteration"), ["has no column iteration"]),
    ("empty layers cell", lambda p: _damage_cell(p, 4, "layers", ""), ["column layers has no number in data row 3"]),
    ("empty file", _replace(b""), ["is empty"]),
    ("header only", _replace(",".join(HISTORY_FIELDS) + "\n"), ["has no rows"]),
    ("not text", _replace(b"iteration,layers\n\xff\xfe\x00\x01,2\n"), ["is not text"]),
    ("NUL byte", _replace("iteration,layers\n1,\x002\n"), ["line 2, column layers"]),
    ("junk header", _replace(",,\n1,2,3\n"), ["line 1: not a history header"]),
]


@pytest.mark.parametrize("name,damage,fragments", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_history_one_line(runs, capsys, name, damage, fragments):
    nested, plain, path = runs
    damage(path)
    _fails(capsys, ["compare", nested, plain], path, *fragments)
    _fails(capsys, ["compare", plain, nested], path, *fragments)
    _fails(capsys, ["plot", nested, plain, "--out", os.path.join(nested, "f.png")], path, *fragments)
    with pytest.raises(ValueError):
        load_run(plain)


def test_history_is_a_folder(runs, capsys):
    nested, plain, path = runs
    os.remove(path)
    os.makedirs(path)
    _fails(capsys, ["compare", nested, plain], path, "cannot be read")


def test_damaged_weights(runs, capsys):
    nested, plain, _ = runs
    weights = os.path.join(plain, "weights.npz")
    with open(weights, "wb") as f:
        f.write(b"PK\x03\x04 not really a zip archive")
    _fails(capsys, ["compare", nested, plain], weights, "cannot be read")


def test_good_weights_give_the_final_accuracy(runs, capsys):
    nested, plain, _ = runs
    np.savez(os.path.join(plain, "weights.npz"), val_accuracy=np.array(77.5))
    assert load_run(plain).final_val_accuracy == 77.5
    assert cli.main(["compare", nested, plain]) == 0
    assert "77.50" in capsys.readouterr().out


def test_missing_history_still_file_not_found(runs, capsys, tmp_path):
    nested, _, _ = runs
    _fails(capsys, ["compare", nested, str(tmp_path / "nothing")], "no history.csv")


def test_unwritable_figure(runs, capsys, tmp_path):
    nested, plain, _ = runs
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails(capsys, ["plot", nested, plain, "--out", str(blocker / "sub" / "f.png")], "cannot write the figure")
