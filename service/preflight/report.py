"""The preflight's findings: one `Check` per question, a `Report` of them, rendered as Markdown or JSON.

JSON is the contract pipelines read: ``{"passed": bool, "checks": [{"name", "status", "detail"}]}`` with
`status` one of ``passed``, ``failed``, ``skipped``; `passed` is true when no check that ran failed.
Markdown is the same content for a person to attach to the certification answers, with a note on what
was judged against the OpenAPI snapshot and what was only reported. Details are built by
the checks from names, numbers and reason labels only: no credential, token or signature value ever
enters a `Check`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

import orjson

from service.core.markdown import table_cell

PASSED: Final = "passed"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"


@dataclass(frozen=True, slots=True)
class Check:
    """One question the preflight asked, its verdict and the evidence (or why it was not asked)."""

    name: str
    status: str
    detail: str

    def to_json(self) -> dict[str, str]:
        """The contract's check object."""
        return {"name": self.name, "status": self.status, "detail": self.detail}


def passed(name: str, detail: str) -> Check:
    """A check that ran and found what the service assumes."""
    return Check(name, PASSED, detail)


def failed(name: str, detail: str) -> Check:
    """A check that ran and found something else (the detail is the evidence)."""
    return Check(name, FAILED, detail)


def skipped(name: str, detail: str) -> Check:
    """A check that could not run (the detail says why)."""
    return Check(name, SKIPPED, detail)


@dataclass(frozen=True, slots=True)
class Report:
    """Every check of one preflight run, and what it ran against."""

    api_url: str
    client_name: str
    generated_at: str  # RFC 3339, UTC
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """True when no check that ran failed (skipped checks do not count against it)."""
        return all(c.status != FAILED for c in self.checks)

    def to_json(self) -> dict[str, object]:
        """The contract's document."""
        return {"passed": self.passed, "checks": [c.to_json() for c in self.checks]}


def render(report: Report, fmt: str) -> str:
    """The report as `md` or `json`, ending with a newline."""
    if fmt == "json":
        return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    return render_md(report)


def render_md(report: Report) -> str:
    """A Markdown page: what was checked, the verdict, one table row per check."""
    counts = Counter(c.status for c in report.checks)
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [
        "# WISEflow preflight",
        "",
        f"- API: `{report.api_url}`",
        f"- X-Client-Name: `{report.client_name}`",
        f"- Run at: {report.generated_at}",
        f"- Result: **{verdict}** ({counts[PASSED]} passed, {counts[FAILED]} failed, "
        f"{counts[SKIPPED]} skipped)",
        "",
        "| check | result | evidence |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {table_cell(c.name)} | {c.status} | {table_cell(c.detail)} |" for c in report.checks]
    lines += [
        "",
        'Shapes are judged against the OpenAPI snapshot as its own examples show them (`"error": null` '
        "accepted); what the snapshot does not describe (rate-limit headers, 429, 503) is reported, not "
        "judged. Skipped checks were not run and say why; every assumption and the setting that changes it "
        "is in the project's `docs/wiseflow.md`.",
    ]
    return "\n".join(lines) + "\n"
