"""`wiseflow-sync preflight`: check the configured WISEflow and the assumptions of the defaults, read-only."""

from __future__ import annotations

from .report import FAILED, PASSED, SKIPPED, Check, Report, render
from .runner import run_preflight

__all__ = ["FAILED", "PASSED", "SKIPPED", "Check", "Report", "render", "run_preflight"]
