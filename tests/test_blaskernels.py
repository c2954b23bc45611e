"""The note a training run prints when OpenBLAS's kernels leave the CPU's AVX-512 unused
(braidnet/blaskernels.py)."""
from __future__ import annotations

import pytest

import mpi_launch
from braidnet import blaskernels as bk
from braidnet._kernels import FUSED_MAX_WIDTH

BUILD = "OpenBLAS 0.3.34.481.3 DYNAMIC_ARCH NO_AFFINITY {} MAX_THREADS=64"
AVX512 = "fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16"
AVX2 = "fpu sse2 avx avx2 fma"


def _cpuinfo(flags: str) -> str:
    block = f"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: {flags}\n"
    return block + "\n" + block.replace(": 0", ": 1", 1)


def test_kernel_family_is_read_from_the_build_string():
    assert bk.kernel_family(BUILD.format("Haswell")) == "Haswell"
    assert bk.kernel_family(BUILD.format("SkylakeX")) == "SkylakeX"
    assert bk.kernel_family("OpenBLAS 0.3.34") is None
    assert bk.kernel_family("") is None


def test_avx512_needs_every_flag_of_the_first_processor():
    assert bk.cpu_has_avx512(_cpuinfo(AVX512))
    assert not bk.cpu_has_avx512(_cpuinfo(AVX2))
    assert not bk.cpu_has_avx512(_cpuinfo(AVX512.replace("avx512vl", "")))
    assert not bk.cpu_has_avx512("")


def test_note_only_where_avx512_goes_unused():
    forced = bk.kernel_note(BUILD.format("Haswell"), _cpuinfo(AVX512), {"OPENBLAS_CORETYPE": "Haswell"})
    assert forced.startswith("note: OPENBLAS_CORETYPE=Haswell is set: OpenBLAS runs its Haswell kernels")
    assert "unset it" in forced and "\n" not in forced
    chosen = bk.kernel_note(BUILD.format("Haswell"), _cpuinfo(AVX512), {})
    assert chosen.startswith("note: OpenBLAS chose its Haswell kernels") and "OPENBLAS_CORETYPE=SkylakeX" in chosen
    for family in ("SkylakeX", "Cooperlake", "SapphireRapids"):
        assert bk.kernel_note(BUILD.format(family), _cpuinfo(AVX512), {"OPENBLAS_CORETYPE": family}) is None
    assert bk.kernel_note(BUILD.format("Haswell"), _cpuinfo(AVX2), {"OPENBLAS_CORETYPE": "Haswell"}) is None
    assert bk.kernel_note("not OpenBLAS", _cpuinfo(AVX512), {}) is None


def test_narrow_dense_layers_get_no_note():
    # they run braidnet's fused kernels, whatever OpenBLAS does
    assert bk.note_for_network("dense", 8) is None


TOML = """
[data]
n_train = 40
n_val = 10

[network]
width = {width}
layers = 4

[braid]
max_levels = 2
cfactor = 2

[optimizer]
iterations = 1

[output]
progress = true
"""


@pytest.mark.mpi
@pytest.mark.parametrize("width", [8, 40])   # fused kernels, BLAS
def test_training_run_says_so_once_above_its_progress(width, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(TOML.format(width=width))
    proc = mpi_launch.check(mpi_launch.run_cli(1, ["train", cfg, "--out", tmp_path / "out"], 120.0,
                                               env={"OPENBLAS_CORETYPE": "Haswell"}))
    with open("/proc/cpuinfo") as f:
        avx512 = bk.cpu_has_avx512(f.read())
    lines = proc.stdout.splitlines()
    notes = [ln for ln in lines if ln.startswith("note: OPENBLAS_CORETYPE=Haswell is set")]
    assert len(notes) == (1 if avx512 and width > FUSED_MAX_WIDTH else 0), proc.stdout
    if notes:
        assert lines.index(notes[0]) < next(i for i, ln in enumerate(lines) if ln.startswith("iteration | level"))
    assert proc.stderr.strip() == "" or "OPENBLAS_CORETYPE" not in proc.stderr
