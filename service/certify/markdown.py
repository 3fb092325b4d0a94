"""The certification document as Markdown: the same object `--format json` prints, one bullet per field."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from .model import Certification

TITLES: Final = {
    "overview": "1. Overview",
    "auth": "2. Authentication and headers",
    "endpoints": "3. Endpoints used",
    "sync": "4. Synchronisation and polling",
    "webhooks": "5. Webhooks",
    "rate_limits": "6. Rate limiting and retries",
    "logging": "7. Logging and monitoring",
    "errors": "8. Error handling and resilience",
}
NOT_MEASURED: Final = "not measured"
# Fields whose name does not read as a label once its underscores are spaces.
LABELS: Final = {
    "retry_after_answers": "Answers with Retry-After (429, 503)",
    "retry_after_honoured": "Of those, Retry-After honoured (no request sent before it ended)",
}


def render_markdown(document: Certification) -> str:
    """Every section of `document` under its review title; `None` reads "not measured"."""
    out = ["# WISEflow integration certification: wiseflow-sync", ""]
    for field in dataclasses.fields(document):
        out.append(f"## {TITLES[field.name]}")
        section = getattr(document, field.name)
        if isinstance(section, list):
            out.extend(
                f"- `{e.method} {e.path}`: {e.purpose} (used by {', '.join(e.used_by)}; "
                f"requests observed: {field_text(e.observed)})"
                for e in section
            )
        else:
            out.extend(
                f"- {field_label(f.name)}: {field_text(getattr(section, f.name))}"
                for f in dataclasses.fields(section)
            )
        out.append("")
    return "\n".join(out)


def field_label(name: str) -> str:
    """A field's name as a reader's label: `poll_interval_s` -> "Poll interval (s)"."""
    if name in LABELS:
        return LABELS[name]
    unit = ""
    if name.endswith("_s"):
        name, unit = name[:-2], " (s)"
    words = name.replace("_", " ")
    return words[0].upper() + words[1:] + unit


def field_text(value: Any) -> str:
    """A figure as text: `None` "not measured", booleans yes/no, lists and mappings on one line."""
    if value is None:
        return NOT_MEASURED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {field_text(v)}" for k, v in value.items()) if value else "none"
    if dataclasses.is_dataclass(value):
        return ", ".join(f"{f.name} {field_text(getattr(value, f.name))}" for f in dataclasses.fields(value))
    return str(value)
