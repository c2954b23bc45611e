"""Build braidnet: the bundled MGRIT core (xbraid/*.c) and the Cython modules in braidnet/.

Configuration, from the environment:

- ``MPICC``: the MPI compiler wrapper used to compile and link (default: ``mpicc`` on PATH, which the
  PyPI ``mpich`` wheel provides). Its ``-show`` output gives the MPI include and library flags.
- ``XBRAID_DIR``: build against an installed LLNL XBraid (its ``braid.h`` and ``libbraid.a``, in
  ``$XBRAID_DIR/braid`` or ``$XBRAID_DIR``) instead of the bundled core. braidnet uses only the
  public ``braid.h`` interface, so either works.
- ``BRAIDNET_MODULES=a,b``: build only these Cython modules of braidnet/ (development).
- ``BRAIDNET_DEBUG=1``: compile with ``-O0 -g`` (and ``-fsanitize=address`` if ``BRAIDNET_ASAN=1``).
"""
from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.modified import newer_group

HERE = os.path.dirname(os.path.abspath(__file__))
CORE_SOURCES = sorted(glob.glob(os.path.join("xbraid", "*.c")))
# The SIMD kernels of braidnet._kernels: plain C, compiled on their own with all warnings on (the
# Cython-generated C is not -Wextra clean) and linked into that extension only.  Tested without
# Python by braidnet/kernels/test_kernels.c (scripts/check_kernels.sh).
KERNELS_DIR = os.path.join("braidnet", "kernels")
KERNELS_C = os.path.join(KERNELS_DIR, "bn_kernels.c")
KERNELS_H = os.path.join(KERNELS_DIR, "bn_kernels.h")
KERNELS_WARN = ["-Wall", "-Wextra"]


def _find_mpicc() -> str:
    mpicc = os.environ.get("MPICC") or shutil.which("mpicc")
    if not mpicc:
        # A venv's mpich wheel puts mpicc beside the interpreter even when the venv is not activated.
        cand = os.path.join(os.path.dirname(sys.executable), "mpicc")
        if os.path.exists(cand):
            mpicc = cand
    if not mpicc:
        raise RuntimeError(
            "braidnet needs an MPI compiler wrapper: set MPICC=/path/to/mpicc, put mpicc on PATH, "
            "or `pip install mpich` (the PyPI wheel ships mpicc, mpi.h and mpiexec)."
        )
    return mpicc


def _xbraid_dir() -> tuple[str, str] | None:
    """(include dir, library dir) of an installed LLNL XBraid, or None for the bundled core."""
    root = os.environ.get("XBRAID_DIR")
    if not root:
        return None
    for d in (os.path.join(root, "braid"), root):
        if os.path.exists(os.path.join(d, "braid.h")) and os.path.exists(os.path.join(d, "libbraid.a")):
            return d, d
    raise RuntimeError(f"XBRAID_DIR={root!r} holds no braid.h and libbraid.a (looked in {root}/braid and {root})")


class BuildExt(build_ext):
    """Compile and link with the MPI wrapper; add numpy/mpi4py/scipy include folders when run."""

    def build_extensions(self) -> None:
        import mpi4py
        import numpy

        mpicc = _find_mpicc()
        show = subprocess.run([mpicc, "-show"], capture_output=True, text=True)
        if show.returncode != 0:
            raise RuntimeError(f"`{mpicc} -show` failed: {show.stderr.strip()}")
        mpi_flags = shlex.split(show.stdout)[1:]
        cflags = [f for f in mpi_flags if f.startswith(("-I", "-D"))]
        ldflags = [f for f in mpi_flags if not f.startswith(("-I", "-D"))]

        debug = os.environ.get("BRAIDNET_DEBUG") == "1"
        opt = ["-O0", "-g"] if debug else ["-O3"]
        if os.environ.get("BRAIDNET_ASAN") == "1":
            opt += ["-fsanitize=address", "-fno-omit-frame-pointer"]
            ldflags += ["-fsanitize=address"]
        xb = _xbraid_dir()
        print(f"braidnet build: MPICC={mpicc}; MPI flags {' '.join(mpi_flags)}; "
              f"core={'LLNL XBraid in ' + xb[0] if xb else 'bundled xbraid/'}; opt={' '.join(opt)}")

        for ext in self.extensions:
            ext.include_dirs += [numpy.get_include(), mpi4py.get_include(), "xbraid"]
            ext.extra_compile_args += cflags + opt + ["-Wno-unused-function", "-Wno-unreachable-code"]
            ext.extra_link_args += ldflags
            ext.define_macros.append(("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"))
            if xb:  # every module sees LLNL's braid.h; only braidnet.braid links the library
                ext.include_dirs.insert(0, xb[0])
            if ext.name == "braidnet.braid":
                if xb:
                    ext.extra_link_args += [os.path.join(xb[1], "libbraid.a"), "-lm"]
                else:
                    ext.sources += CORE_SOURCES
            if ext.name == "braidnet._kernels":
                ext.extra_objects.append(self._compile_kernels(opt))
        super().build_extensions()

    def _compile_kernels(self, opt: list[str]) -> str:
        """Compile KERNELS_C into build_temp with ``opt`` and KERNELS_WARN; return the object."""
        obj = self.compiler.object_filenames([KERNELS_C], output_dir=self.build_temp)[0]
        if self.force or newer_group([KERNELS_C, KERNELS_H], obj):
            self.compiler.compile([KERNELS_C], output_dir=self.build_temp, include_dirs=[KERNELS_DIR],
                                  extra_postargs=opt + KERNELS_WARN, depends=[KERNELS_H])
        return obj


def _extensions():
    from Cython.Build import cythonize

    # BRAIDNET_MODULES=braid,_kernels builds only those modules (handy while developing one of them).
    only = [m for m in os.environ.get("BRAIDNET_MODULES", "").split(",") if m]
    exts = [Extension(f"braidnet.{os.path.basename(p)[:-4]}", [p]) for p in sorted(glob.glob("braidnet/*.pyx"))
            if not only or os.path.basename(p)[:-4] in only]
    for ext in exts:
        if ext.name == "braidnet._kernels":  # its C kernels: compiled by BuildExt._compile_kernels
            ext.include_dirs.append(KERNELS_DIR)
            ext.depends += [KERNELS_C, KERNELS_H]
    return cythonize(exts, language_level=3, compiler_directives={"embedsignature": True},
                     include_path=["braidnet", "xbraid"])


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
