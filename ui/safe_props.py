"""Data into a NiceGUI element's props without NiceGUI's props-string parser.

`.props("a=b c")` splits its string on whitespace and sends `:key=value` pairs to the browser as
JavaScript expressions, so any text of ours (an agent's name, a status, a title) put into such a
string could become script. Only constant strings go to `.props(...)`; values go through here (or
`element.props["key"] = value`), which sets them as plain data. tests/test_props_strings.py fails
the build if an f-string, `+` or `.format` feeds `.props(`, `.classes(` or `.style(` in ui/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from nicegui import ui

E = TypeVar("E", bound=ui.element)


def with_props(element: E, values: Mapping[str, Any]) -> E:
    """Set each prop to its value as data (the element updates once); returns the element."""
    element.props.update(dict(values))
    return element
