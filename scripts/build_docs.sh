#!/usr/bin/env bash
# Build the HTML documentation (Sphinx; sources in docs/) from scratch into build/docs, or into the
# folder given, and fail on any warning.
#
#   scripts/build_docs.sh [OUT]
#
# The API pages come from the docstrings of this checkout's braidnet, so its extension modules must
# be built: with no braidnet importable here, scripts/_venv.sh installs everything first (the active
# virtual environment, or .venv).  Sphinx and MyST-Parser are installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/docs}
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
if [ -z "${VIRTUAL_ENV:-}" ] ||
   ! python -c "import braidnet._kernels, braidnet._layerapp, braidnet.braid, braidnet.refapps" >/dev/null 2>&1; then
  . scripts/_venv.sh
fi
if ! python -c "import sphinx, myst_parser, sys; sys.exit(sphinx.version_info < (7, 4))" >/dev/null 2>&1; then
  echo "== installing Sphinx and MyST-Parser into $VIRTUAL_ENV"
  python -m pip install -q --disable-pip-version-check "sphinx>=7.4" "myst-parser>=2"
fi
echo "== building the documentation into $out (warnings are errors)"
rm -rf "$out"
python -m sphinx -W --keep-going -q -b html docs "$out"
echo "documentation: $out/index.html"
