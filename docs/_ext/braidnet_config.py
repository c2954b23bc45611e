"""Sphinx extension: the configuration reference, generated from :mod:`braidnet.config` at build time.

``.. braidnet-config-keys::`` expands to one section per ``[section]`` of ``SCHEMA`` (in schema order)
with a summary table and one ``confval`` entry per key: its TOML default, its type, the values it
allows (``CHOICES``, ``RANGES``, ``NONEMPTY``, the list type's rule), whether ``--resume`` may change it
(``RESUMABLE``) and its meaning (the schema's help text).  Nothing is copied by hand: a key added to
the schema appears on the next build, and the page is rebuilt whenever ``braidnet/config.py`` changes.
Each key can be linked from any page as ``:confval:`optimizer.iterations```.
"""
from __future__ import annotations

import json
from typing import Any, List, Tuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string", "ints": "list of integers"}


def _literal(text: str) -> str:
    """``text`` as an inline literal, safe for any content (backquotes, trailing backslash)."""
    return f":literal:`{text.replace(chr(92), chr(92) * 2).replace('`', chr(92) + '`')}`"


def _escape(text: str) -> str:
    """Plain help text, with the characters that reST would read as markup escaped."""
    out = text.replace("\\", "\\\\")
    for ch in "*`|_[":
        out = out.replace(ch, "\\" + ch)
    return out


def default_text(value: Any) -> str:
    """The default as a TOML literal, as ``braidnet config`` prints it."""
    return json.dumps(value)


def allowed_text(config, section: str, key: str) -> str:
    """What the key allows, from the declarations in braidnet.config (type, choices, range, non-empty)."""
    kind = config.SCHEMA[section][key][1]
    choices = config.CHOICES.get((section, key))
    rng = config.RANGES.get((section, key))
    if choices:
        return "one of " + ", ".join(_literal(json.dumps(c)) for c in choices)
    if rng is not None:
        return _literal(rng.text())
    if kind is bool:
        return f"{_literal('true')} or {_literal('false')}"
    if kind == "ints":
        return "integers " + _literal(">= 0")
    if kind is float:                       # config._typed: numbers are never negative
        return _literal(">= 0")
    if (section, key) in config.NONEMPTY:
        return "a non-empty string"
    return "any string"


def resume_text(config, section: str, key: str) -> str:
    if (section, key) not in config.RESUMABLE:
        return "no"
    if (section, key) == ("nested", "schedule"):
        return "yes (positionally)"
    return "yes"


def rst_lines(config) -> List[str]:
    lines: List[str] = []
    for section, keys in config.SCHEMA.items():
        title = f"[{section}]"
        lines += [f".. _config-{section}:", "", title, "-" * len(title), ""]
        rows: List[Tuple[str, str, str, str]] = []
        for key, (default, _kind, _help) in keys.items():
            rows.append((f":confval:`{key} <{section}.{key}>`", _literal(default_text(default)),
                         allowed_text(config, section, key), resume_text(config, section, key)))
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 28 22 36 14", "",
                  "   * - key", "     - default", "     - allowed", "     - on ``--resume``"]
        for row in rows:
            lines.append(f"   * - {row[0]}")
            lines += [f"     - {cell}" for cell in row[1:]]
        lines.append("")
        for key, (default, kind, help_text) in keys.items():
            lines += [f".. confval:: {section}.{key}",
                      f"   :type: {TYPE_NAMES.get(kind, str(kind))}",
                      f"   :default: {_literal(default_text(default))}", "",
                      f"   {_escape(help_text)}", "",
                      f"   Allowed: {allowed_text(config, section, key)}.  "
                      f"May change on ``--resume``: {resume_text(config, section, key)}.", ""]
    return lines


class ConfigKeys(SphinxDirective):
    """``.. braidnet-config-keys::``: every section and key of braidnet.config.SCHEMA."""

    has_content = False

    def run(self) -> List[nodes.Node]:
        from braidnet import config

        self.env.note_dependency(config.__file__)
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(rst_lines(config), source="braidnet.config.SCHEMA"),
                                 node)
        return node.children


def setup(app):
    app.add_directive("braidnet-config-keys", ConfigKeys)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
