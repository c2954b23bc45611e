"""Build braidnet: the bundled MGRIT core (xbraid/*.c) and the Cython modules in braidnet/.

Configuration, from the environment:

- ``MPICC``: the MPI compiler wrapper used to compile and link (default: the ``mpicc`` beside the
  building interpreter, which the PyPI ``mpich`` wheel provides, else ``mpicc`` on PATH). Its ``-show``
  output gives the MPI include and library flags.
- ``XBRAID_DIR``: build against an installed LLNL XBraid (its ``braid.h`` and ``libbraid.a``, in
  ``$XBRAID_DIR/braid`` or ``$XBRAID_DIR``) instead of the bundled core. braidnet uses only the
  public ``braid.h`` interface, so either works.
- BLAS: the kernels (``braidnet._kernels``, ``braidnet._convkernels``) link the OpenBLAS of the
  ``scipy-openblas32`` wheel (``braidnet/kernels/bn_blas.h`` says why), with a run path to
  ``site-packages/scipy_openblas32/lib`` relative to the installed package (and, in an in-place
  build, to the building environment's copy).
- ``BRAIDNET_MODULES=a,b``: build only these Cython modules of braidnet/ (development).
- ``BRAIDNET_DEBUG=1``: compile with ``-O0 -g`` (and ``-fsanitize=address`` if ``BRAIDNET_ASAN=1``).

Every source a build needs is named below (``EXTENSIONS``, ``CORE_SOURCES``, ``CORE_HEADERS``,
``KERNELS_C``/``KERNELS_H``: the one list of them; tests/test_release.py checks it against the tree).
A missing or unlisted one stops the build with a message naming it, so that an incomplete source tree
or sdist never installs a package without its core or one of its extensions.

The build writes ``braidnet/_build.py`` (the core it was built with; :func:`braidnet.build_info`).

MPI: the extensions link the library of the MPI wrapper (``mpicc -show``), with a run path to its
folder and, for the PyPI ``mpich`` wheel, also to ``<prefix>/lib`` relative to the installed package
(where that wheel puts ``libmpi.so.12`` and where mpi4py looks for it first), so that a wheel built
in an isolated build environment finds the ``mpich`` installed beside it.  Installing with
``--no-build-isolation`` into an environment that already holds ``mpich`` and ``mpi4py`` links that
very library (scripts/_venv.sh, scripts/check_release.sh).
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

# The Cython modules: braidnet/<name>.pyx -> braidnet.<name>.  The one list of them.
EXTENSIONS = ("braid", "_kernels", "_layerapp", "refapps", "_convkernels")
# The bundled MGRIT core (xbraid/), compiled into braidnet.braid unless XBRAID_DIR is set.
CORE_SOURCES = tuple(os.path.join("xbraid", f) for f in (
    "base.c", "braid.c", "comm.c", "cycle.c", "drive.c", "grid.c", "interp.c", "norm.c", "relax.c",
    "restrict.c", "status.c", "trace.c"))
CORE_HEADERS = tuple(os.path.join("xbraid", f) for f in ("braid.h", "_braid.h", "braid_status.h"))
# The SIMD kernels of braidnet._kernels: plain C, compiled on their own with all warnings on (the
# Cython-generated C is not -Wextra clean) and linked into that extension only.  Tested without
# Python by braidnet/kernels/test_kernels.c (scripts/check_kernels.sh).
KERNELS_DIR = os.path.join("braidnet", "kernels")
KERNELS_C = os.path.join(KERNELS_DIR, "bn_kernels.c")
KERNELS_H = os.path.join(KERNELS_DIR, "bn_kernels.h")
# the kernels' body, generic over the element type: included by bn_kernels.c once per precision
KERNELS_BODY = os.path.join(KERNELS_DIR, "bn_kernels_real.h")
KERNELS_WARN = ["-Wall", "-Wextra"]
# The convolution kernels of braidnet._convkernels (padding, direct loops, im2col): plain C likewise,
# linked into that extension together with KERNELS_C (whose activation passes they share).
CONV_C = os.path.join(KERNELS_DIR, "bn_conv.c")
CONV_H = os.path.join(KERNELS_DIR, "bn_conv.h")
# The BLAS of both (scipy-openblas32's OpenBLAS, row-major GEMM): declared for Cython in braidnet/_blas.pxd.
BLAS_H = os.path.join(KERNELS_DIR, "bn_blas.h")
BLAS_EXTENSIONS = ("_kernels", "_convkernels")
# Written by the build: what braidnet.build_info() reports.  Not a source (ignored by git, not in the sdist).
BUILD_INFO = os.path.join("braidnet", "_build.py")


def _check_sources() -> None:
    """Stop with a message naming them if a source of the build is missing, or one is not listed above."""
    def pyx(name: str) -> str:
        return os.path.join("braidnet", name + ".pyx")

    expected = [pyx(m) for m in EXTENSIONS] + list(CORE_SOURCES) + list(CORE_HEADERS) + [
        KERNELS_C, KERNELS_H, KERNELS_BODY, CONV_C, CONV_H, BLAS_H]
    missing = [p for p in expected if not os.path.isfile(os.path.join(HERE, p))]
    def present(pattern: str) -> set:
        return {os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern))}

    unlisted = sorted(present(pyx("*")) - {pyx(m) for m in EXTENSIONS})
    unlisted += sorted(present(os.path.join("xbraid", "*.c")) - set(CORE_SOURCES))
    problems = []
    if missing:
        problems.append(
            "missing: " + ", ".join(missing) + "\n  braidnet is built from the bundled MGRIT core (xbraid/*.c, "
            "xbraid/*.h), the Cython sources (braidnet/*.pyx, *.pxd, braidnet/_braid/*.pxi) and "
            "braidnet/kernels/bn_kernels.[ch], bn_conv.[ch]; this source tree or sdist is incomplete.  Use a complete "
            "git checkout, or an sdist made from one with `python -m build --sdist` (MANIFEST.in lists "
            "what it holds).")
    if unlisted:
        problems.append(
            "not in setup.py's lists (EXTENSIONS, CORE_SOURCES): " + ", ".join(unlisted)
            + "\n  add each to its list in setup.py, or remove it; an unlisted source would not be built.")
    if problems:
        sys.exit("error: braidnet cannot be built from " + HERE + ": " + "\n".join(problems))


def _find_mpicc() -> str:
    """$MPICC, else the mpicc beside the building interpreter, else the one on PATH.

    The environment that builds is the one that runs: its mpich wheel (mpicc beside the interpreter)
    is the MPI its mpi4py loads, so it comes before whatever another environment put on PATH (two
    MPI libraries in one process otherwise).
    """
    beside = os.path.join(os.path.dirname(sys.executable), "mpicc")
    mpicc = os.environ.get("MPICC") or (beside if os.path.exists(beside) else shutil.which("mpicc"))
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


def _wheel_prefix_rpath(mpicc: str, ldflags: list[str]) -> list[str]:
    """The extra run path for an MPI wrapper of the PyPI ``mpich`` wheel, else nothing.

    That wheel installs ``<prefix>/bin/mpicc`` and ``<prefix>/lib/libmpi.so.12``.  In an isolated build
    ``<prefix>`` is a temporary folder that is gone when the package runs; ``$ORIGIN/../../..`` is
    ``<prefix>/lib`` of the environment the package is installed into (``<prefix>/lib/pythonX.Y/
    site-packages/braidnet/``), where the ``mpich`` installed with braidnet puts the same library and
    where mpi4py looks for it first.  It comes after the wrapper's own run path.
    """
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(shutil.which(mpicc) or mpicc)))
    libdir = os.path.join(prefix, "lib")
    from_wheel = glob.glob(os.path.join(libdir, "python3*", "site-packages", "mpich-*.dist-info"))
    if from_wheel and any(f == "-L" + libdir or f == "-L" + os.path.realpath(libdir) for f in ldflags):
        return ["-Wl,-rpath,$ORIGIN/../../.."]
    return []


def _openblas(inplace: bool) -> tuple[list[str], list[str]]:
    """Compile and link flags for the OpenBLAS of the scipy-openblas32 wheel.

    Its library goes into ``site-packages/scipy_openblas32/lib``; ``$ORIGIN/../scipy_openblas32/lib``
    finds it from ``site-packages/braidnet/`` wherever the package is installed (an isolated build's
    copy is gone by then).  An in-place build also gets the building environment's folder.  The
    Python module scipy_openblas32 is not imported at run time: it loads the library into the global
    namespace, where its symbols would shadow scipy's own OpenBLAS.
    """
    try:
        import scipy_openblas32 as ob
    except ImportError:
        raise RuntimeError("braidnet's kernels link the OpenBLAS of the scipy-openblas32 wheel: "
                           "`pip install scipy-openblas32` (or build with pip's build isolation)") from None
    libdir = ob.get_lib_dir()
    rpath = ["-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib"] + (["-Wl,-rpath," + libdir] if inplace else [])
    return ["-I" + ob.get_include_dir()], ["-L" + libdir, "-l" + ob.get_library()] + rpath


class BuildExt(build_ext):
    """Cythonize, then compile and link with the MPI wrapper (numpy/mpi4py include folders added when
    run); write braidnet/_build.py."""

    def run(self) -> None:
        from Cython.Build import cythonize

        # Cythonized here, not when setup.py starts: making an sdist or reading metadata needs no Cython
        # and leaves no generated C in the tree.
        # Only the sources change: the Extension objects keep what finalize_options() set on them.
        generated = {e.name: e for e in cythonize(self.extensions, language_level=3,
                                                  compiler_directives={"embedsignature": True},
                                                  include_path=["braidnet", "xbraid"])}
        for ext in self.extensions:
            ext.sources = generated[ext.name].sources
        inplace = self._inplace = self.inplace      # setuptools' run() resets it while building
        super().run()
        if any(ext.name == "braidnet.braid" for ext in self.extensions):
            self._write_build_info([HERE] if inplace else [self.build_lib])

    def _write_build_info(self, roots: list[str]) -> None:
        xb = os.environ.get("XBRAID_DIR")
        text = ("# Written by braidnet's setup.py when braidnet.braid was built: which MGRIT core it holds.\n"
                "# Not a source file (not in git, not in the sdist).  Read by braidnet.build_info().\n"
                f"CORE = {'LLNL XBraid' if xb else 'bundled'!r}\n"
                f"XBRAID_DIR = {os.path.abspath(xb) if xb else None!r}\n")
        for root in roots:
            path = os.path.join(root, BUILD_INFO)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    def build_extensions(self) -> None:
        import mpi4py
        import numpy

        self._compiled: set = set()     # the kernel objects compiled by this run (_compile_kernels)
        mpicc = _find_mpicc()
        show = subprocess.run([mpicc, "-show"], capture_output=True, text=True)
        if show.returncode != 0:
            raise RuntimeError(f"`{mpicc} -show` failed: {show.stderr.strip()}")
        mpi_flags = shlex.split(show.stdout)[1:]
        cflags = [f for f in mpi_flags if f.startswith(("-I", "-D"))]
        ldflags = [f for f in mpi_flags if not f.startswith(("-I", "-D"))]
        ldflags += _wheel_prefix_rpath(mpicc, ldflags)

        debug = os.environ.get("BRAIDNET_DEBUG") == "1"
        opt = ["-O0", "-g"] if debug else ["-O3"]
        if os.environ.get("BRAIDNET_ASAN") == "1":
            opt += ["-fsanitize=address", "-fno-omit-frame-pointer"]
            ldflags += ["-fsanitize=address"]
        xb = _xbraid_dir()
        blas_cflags, blas_ldflags = _openblas(self._inplace)
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
            if ext.name in {"braidnet." + m for m in BLAS_EXTENSIONS}:
                ext.extra_compile_args += blas_cflags
                ext.extra_link_args += blas_ldflags
            if ext.name in ("braidnet._kernels", "braidnet.braid"):
                ext.extra_objects.append(self._compile_kernels(opt))
            if ext.name == "braidnet._convkernels":
                ext.extra_objects += [self._compile_kernels(opt), self._compile_kernels(opt, CONV_C, (CONV_H, KERNELS_H))]
        super().build_extensions()

    def _compile_kernels(self, opt: list[str], source: str = KERNELS_C,
                         headers: tuple = (KERNELS_H, KERNELS_BODY)) -> str:
        """Compile ``source`` (KERNELS_C or CONV_C) into build_temp with ``opt`` and KERNELS_WARN, once
        per build; return the object."""
        obj = self.compiler.object_filenames([source], output_dir=self.build_temp)[0]
        if (self.force and obj not in self._compiled) or newer_group([source, *headers], obj):
            self.compiler.compile([source], output_dir=self.build_temp, include_dirs=[KERNELS_DIR],
                                  extra_postargs=opt + KERNELS_WARN, depends=list(headers))
        self._compiled.add(obj)
        return obj


def _extensions() -> list[Extension]:
    """The extensions of EXTENSIONS (or of BRAIDNET_MODULES=a,b: only those, handy while developing one)."""
    only = [m for m in os.environ.get("BRAIDNET_MODULES", "").split(",") if m]
    unknown = sorted(set(only) - set(EXTENSIONS))
    if unknown:
        sys.exit(f"error: BRAIDNET_MODULES names no module of braidnet: {', '.join(unknown)} "
                 f"(the modules: {', '.join(EXTENSIONS)})")
    exts = []
    for name in EXTENSIONS:
        if only and name not in only:
            continue
        ext = Extension(f"braidnet.{name}", [])
        # set after construction: without Cython, setuptools' Extension would swap .pyx for a .c the
        # sdist does not have; BuildExt.run() cythonizes
        ext.sources = [os.path.join("braidnet", name + ".pyx")]
        if name == "braid":    # its vector sum is a C kernel too
            ext.include_dirs.append(KERNELS_DIR)
            ext.depends += list(CORE_SOURCES) + list(CORE_HEADERS) + [KERNELS_C, KERNELS_H, KERNELS_BODY]
        if name == "_kernels":  # its C kernels: compiled by BuildExt._compile_kernels
            ext.include_dirs.append(KERNELS_DIR)
            ext.depends += [KERNELS_C, KERNELS_H, KERNELS_BODY, BLAS_H]
        if name == "_convkernels":  # its C kernels and the dense ones' activation passes
            ext.include_dirs.append(KERNELS_DIR)
            ext.depends += [KERNELS_C, KERNELS_H, KERNELS_BODY, CONV_C, CONV_H, BLAS_H]
        exts.append(ext)
    return exts


_check_sources()
setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
