"""Markdown the reports share (`preflight`, `spec diff`): text that stays inside one table cell."""

from __future__ import annotations


def table_cell(text: str) -> str:
    """`text` safe inside one Markdown table cell: backslashes and pipes escaped, newlines as spaces."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
