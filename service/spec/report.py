"""A `spec diff` as JSON (the contract pipelines read) or Markdown (for a person, e.g. a release ticket)."""

from __future__ import annotations

from collections import Counter

import orjson

from service.core.markdown import table_cell

from .diff import BREAKING, COMPATIBLE, UNUSED, Diff


def render(diff: Diff, fmt: str, source: str) -> str:
    """The diff as `json` or `md`, ending with a newline; `source` names the document compared."""
    if fmt == "json":
        return orjson.dumps(diff.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    counts = Counter(c.kind for c in diff.changes)
    tally = f"{counts[BREAKING]} breaking, {counts[COMPATIBLE]} compatible, {counts[UNUSED]} unused"
    verdict = (
        "**breaking**: something the service uses changes"
        if diff.breaking
        else "**not breaking**: nothing the service uses breaks"
    )
    lines = [
        "# WISEflow OpenAPI: what a new document changes for wiseflow-sync",
        "",
        f"- Compared: the bundled snapshot ({diff.old_version})"
        f" with `{table_cell(source)}` ({diff.new_version})",
        f"- Result: {verdict} ({tally})",
        "",
    ]
    if not diff.changes:
        return "\n".join([*lines, "No differences.", ""])
    lines += ["| kind | endpoint | change |", "| --- | --- | --- |"]
    lines += [
        f"| {c.kind} | {table_cell(c.endpoint or '(document)')} | {table_cell(c.detail)} |"
        for c in diff.changes
    ]
    lines += [
        "",
        "breaking: an endpoint the service calls, a field it reads, or a parameter it sends is gone or changed "
        "type, or a new required parameter it does not send; compatible: other changes to endpoints it "
        "calls; unused: endpoints and webhook events it does not use.",
    ]
    return "\n".join(lines) + "\n"
