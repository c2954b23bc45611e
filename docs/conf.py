"""Sphinx configuration of braidnet's documentation (build: ``bash scripts/build_docs.sh``).

The API pages are built from the docstrings of the braidnet package in *this* checkout (the
Cython modules built in place: ``python setup.py build_ext --inplace`` or ``pip install -e .``), and
the configuration reference from :data:`braidnet.config.SCHEMA` (``_ext/braidnet_config.py``).
"""
from __future__ import annotations

import inspect
import os
import re
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)                        # this checkout's braidnet, before any installed one
sys.path.insert(0, os.path.join(DOCS, "_ext"))

# Sphinx >= 9 documents a compiled module from its .pyi stub when there is one (and puts the stub into
# sys.modules).  braidnet's stubs (braid.pyi, refapps.pyi, ...) carry the types for type checkers but no
# docstrings, while the compiled modules carry both docstrings and signatures (Cython's embedsignature):
# document the compiled modules.
os.environ["SPHINX_AUTODOC_IGNORE_NATIVE_MODULE_TYPE_STUBS"] = "1"

from sphinx.ext.napoleon import _process_docstring as _napoleon_process_docstring  # noqa: E402

import braidnet  # noqa: E402

if os.path.dirname(os.path.dirname(os.path.abspath(braidnet.__file__))) != ROOT:
    raise RuntimeError(f"the docs would describe {braidnet.__file__}, not this checkout ({ROOT})")
try:
    # the compiled modules: fail here, not as a hundred warnings
    import braidnet._kernels, braidnet._layerapp, braidnet.braid, braidnet.refapps  # noqa: E401,E402,F401
except ImportError as e:
    raise RuntimeError(f"braidnet's extension modules are not built in {ROOT} ({e}); run "
                       f"'python setup.py build_ext --inplace' or 'pip install --no-build-isolation -e .' "
                       f"there first") from None

project = "braidnet"
author = "the braidnet developers"
copyright = "the braidnet developers"
release = braidnet.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",        # the Google-style "Args:" sections of the docstrings
    "sphinx.ext.viewcode",
    "myst_parser",                # the Markdown pages: the guides, design.md, results.md
    "braidnet_config",            # the configuration reference, generated from braidnet.config.SCHEMA
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# Markdown: GitHub-style heading anchors, so that design.md and results.md link to each other's
# sections (results.md#1-peaks-...) the same way on GitHub and here.
myst_heading_anchors = 4

# autodoc: members in source order, signatures with their annotations (the Cython modules embed
# their signatures in the docstrings: embedsignature in setup.py).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True      # defaults as written ("dot=_dot", not "<function _dot at 0x...>")
python_use_unqualified_type_names = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "alabaster"
html_title = f"braidnet {release}"
html_static_path: list = []
html_theme_options = {
    "description": "Layer-parallel ResNet training with MGRIT and nested iteration",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}


# The docstrings' "Args:" sections are Google style (napoleon), but their attributes, properties and
# module data are prose: napoleon would read a first line such as "(ilower, iupper): the fine time
# indices ..." as "type: description".  So napoleon runs on everything but those.
def _napoleon_except_attributes(app, what, name, obj, options, lines):
    if what not in ("attribute", "property", "data"):
        _napoleon_process_docstring(app, what, name, obj, options, lines)


# Cython's embedsignature writes a property's type as the first docstring line, "Core.levels: int";
# autodoc reads signatures from the docstrings of functions only.  Make that line a type field.
_PROPERTY_SIGNATURE = re.compile(r"^(?:\w+\.)+(?P<name>\w+): (?P<type>.+)$")


def _cython_property_type(app, what, name, obj, options, lines):
    if what not in ("property", "attribute") or not lines:
        return
    match = _PROPERTY_SIGNATURE.match(lines[0])
    if not match or not name.endswith("." + match.group("name")):
        return
    del lines[0]
    while lines and not lines[0].strip():
        del lines[0]
    lines.extend(["", f":type: {match.group('type')}"])


# Module data of a compiled module has no docstring of its own: autodoc would show int's or bool's.
# Drop that; the page says what the value means.
def _no_type_docstring(app, what, name, obj, options, lines):
    if what in ("data", "attribute") and type(obj) in (int, float, bool, str, tuple, list, dict) and \
            "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__).strip():
        lines.clear()


# "Bases: _RecordingApp": show a private base class as the public classes it derives from.
def _public_bases(app, name, obj, options, bases):
    public = []
    for base in bases:
        stack = [base]
        while stack:
            cls = stack.pop(0)
            if cls.__name__.startswith("_") and cls is not object:
                stack[:0] = [b for b in cls.__bases__ if b is not object] or [object]
            elif cls not in public:
                public.append(cls)
    bases[:] = public


def setup(app):
    napoleon = [listener.id for listener in app.events.listeners.get("autodoc-process-docstring", [])
                if listener.handler is _napoleon_process_docstring]
    if len(napoleon) != 1:
        raise RuntimeError("docs/conf.py: napoleon's docstring handler not found; update _napoleon_except_attributes")
    app.disconnect(napoleon[0])
    app.connect("autodoc-process-docstring", _napoleon_except_attributes)
    app.connect("autodoc-process-docstring", _cython_property_type, priority=400)
    app.connect("autodoc-process-docstring", _no_type_docstring, priority=400)
    app.connect("autodoc-process-bases", _public_bases)
