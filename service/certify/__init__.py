"""`wiseflow-sync certify`: the certification review's answers as data (`model`), built from the settings
and the recorded figures (`build`), printed as JSON or rendered as Markdown (`markdown`)."""

from __future__ import annotations

from .build import EVENTS_FROM_SETTING, EVENTS_FROM_WISEFLOW, build, requests_per_run
from .markdown import TITLES, field_label, field_text, render_markdown
from .model import Certification

__all__ = [
    "EVENTS_FROM_SETTING",
    "EVENTS_FROM_WISEFLOW",
    "TITLES",
    "Certification",
    "build",
    "field_label",
    "field_text",
    "render_markdown",
    "requests_per_run",
]
