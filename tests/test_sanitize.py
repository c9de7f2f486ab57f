"""Agent and LLM output is untrusted: what the dashboard renders from it can run nothing."""

from __future__ import annotations

import pytest

from ui.widgets import sanitize_html


@pytest.mark.parametrize(
    ("hostile", "must_not_contain"),
    [
        ("<img src=x onerror=alert(1)>", ["<img", "onerror"]),
        ("<script>alert(1)</script>", ["<script", "alert(1)"]),
        ('<a href="javascript:alert(1)">x</a>', ["javascript:"]),
        ('<iframe src="https://example.org"></iframe>', ["<iframe"]),
        ('<div onclick="alert(1)">x</div>', ["onclick"]),
        ("<svg><script>alert(1)</script></svg>", ["<svg", "<script"]),
        ('<p style="background:url(https://evil.example/x)">x</p>', ["url("]),
    ],
)
def test_hostile_html_is_neutralised(hostile: str, must_not_contain: list[str]) -> None:
    cleaned = sanitize_html(hostile)
    for fragment in must_not_contain:
        assert fragment not in cleaned


def test_formatting_survives_and_links_are_marked_untrusted() -> None:
    cleaned = sanitize_html('<p><b>bold</b> <code>x = 1</code> <a href="https://example.org">docs</a></p>')
    assert "<b>bold</b>" in cleaned and "<code>x = 1</code>" in cleaned
    assert 'href="https://example.org"' in cleaned and "nofollow" in cleaned
