"""Whether OpenBLAS's kernels leave this CPU's AVX-512 unused, and the note that says so.

Wide layers (and convolutions) spend most of their time in OpenBLAS's GEMM.  OpenBLAS picks its
kernels when it loads, unless ``OPENBLAS_CORETYPE`` names them; sites and images sometimes set that
variable to an older family for everyone, and a CPU newer than the OpenBLAS build may get its AVX2
kernels.  On a CPU with AVX-512 either can cost much: on an AMD EPYC Zen 5, the GEMM of a width-220
float32 step took 0.87-0.92 ms with the Haswell (AVX2) kernels and 0.45-0.52 ms with the SkylakeX
ones (docs/guide/cluster.md, "Which BLAS kernels").  braidnet does not change the variable (the site
may have set it for a reason); a training run says it once, on rank 0, above its progress lines.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

#: the AVX-512 subset OpenBLAS's SkylakeX kernels use, as /proc/cpuinfo names it (Linux lists these
#: flags only where the operating system enables AVX-512)
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
#: OpenBLAS's x86-64 kernel families that use AVX-512 (lower case)
AVX512_FAMILIES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def kernel_family(blas_config: str) -> Optional[str]:
    """The kernel family in OpenBLAS's build string (``openblas_get_config()``: "OpenBLAS 0.3.34
    DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" gives "Haswell"), or None."""
    words = blas_config.split()
    for i, w in enumerate(words):
        if w.startswith("MAX_THREADS") and i > 1:
            return words[i - 1]
    return None


def cpu_has_avx512(cpuinfo: str) -> bool:
    """Whether the first processor of a /proc/cpuinfo text has :data:`AVX512_FLAGS`."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return AVX512_FLAGS <= set(value.split())
    return False


def kernel_note(blas_config: str, cpuinfo: str, environ: Mapping[str, str]) -> Optional[str]:
    """One line for a run whose OpenBLAS kernels leave the CPU's AVX-512 unused, else None."""
    family = kernel_family(blas_config)
    if family is None or family.lower() in AVX512_FAMILIES or not cpu_has_avx512(cpuinfo):
        return None
    forced = environ.get("OPENBLAS_CORETYPE")
    if forced:
        why = (f"OPENBLAS_CORETYPE={forced} is set: OpenBLAS runs its {family} kernels, without the "
               f"AVX-512 this CPU has")
        fix = "unset it for braidnet's runs unless your site needs it"
    else:
        why = (f"OpenBLAS chose its {family} kernels, without the AVX-512 this CPU has (it may not know "
               f"this CPU)")
        fix = "OPENBLAS_CORETYPE=SkylakeX may make them faster"
    return (f"note: {why}; wide layers' GEMMs may take up to twice as long (docs/guide/cluster.md, "
            f"'Which BLAS kernels'): {fix}")


def note_for_network(kind: str, width: int) -> Optional[str]:
    """:func:`kernel_note` for this process (its OpenBLAS, this CPU, this environment) when a network
    of this ``kind`` ("dense" | "conv") and ``width`` calls BLAS, else None: dense layers up to
    ``FUSED_MAX_WIDTH`` wide run braidnet's own fused kernels."""
    from braidnet._kernels import BLAS, FUSED_MAX_WIDTH
    if kind != "conv" and width <= FUSED_MAX_WIDTH:
        return None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpuinfo = f.read()
    except OSError:
        return None
    return kernel_note(BLAS, cpuinfo, os.environ)
