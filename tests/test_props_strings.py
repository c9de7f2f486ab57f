"""No data in NiceGUI props strings (issue 12, point 3).

`.props("...")` splits its string on whitespace and hands `:key=value` pairs to the browser as
JavaScript, so a value built from data (an agent's name, say) can become script. In ui/, the
arguments of `.props(` and `.style(` must be constant strings (or a choice between constants);
values go through `ui.safe_props.with_props` / `element.props[key] = value`. This test fails the
build on an f-string, `+`, `%` or `.format` (or any other expression) there.
"""

from __future__ import annotations

import ast
from pathlib import Path

UI = Path(__file__).resolve().parents[1] / "ui"
CHECKED = {"props", "style"}


def _constant(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.IfExp):
        return _constant(node.body) and _constant(node.orelse)
    return False


def offending_calls(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in CHECKED:
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if not _constant(arg):
                found.append(f"{filename}:{node.lineno}: .{node.func.attr}({ast.unparse(arg)[:80]})")
    return found


def test_no_props_or_style_string_is_built_from_values() -> None:
    problems = []
    for path in sorted(UI.rglob("*.py")):
        problems += offending_calls(path.read_text(), str(path.relative_to(UI.parent)))
    assert problems == [], "data must not feed a props/style string:\n" + "\n".join(problems)


def test_the_check_catches_f_strings_plus_and_format() -> None:
    bad = """
x.props(f"data-member={name}")
x.props("title=" + name)
x.props("title={}".format(name))
x.style(f"color: {c}")
x.props(value)
"""
    assert len(offending_calls(bad, "bad.py")) == 5
    good = 'x.props("flat dense")\nx.props("a" if ok else "b")\nx.props.update({"title": name})\n'
    assert offending_calls(good, "good.py") == []
