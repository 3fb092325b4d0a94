"""Newer OpenAPI documents for the `spec diff` tests: the bundled snapshot, with one release's changes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from service.spec.document import snapshot

Document = dict[str, Any]


def release(*changes: Callable[[Document], None], version: str = "1.35.0") -> Document:
    """A deep copy of the snapshot, renumbered `version`, with each change applied in turn."""
    document = copy.deepcopy(snapshot())
    document["info"]["version"] = version
    for change in changes:
        change(document)
    return document


def schema(document: Document, name: str) -> dict[str, Any]:
    """A component schema of `document`, to change in place."""
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def drop_search_state(document: Document) -> None:
    """`POST /flows/search` records lose `state`, which discovery reads."""
    del schema(document, "flows-search-response")["properties"]["state"]


def drop_flow_endpoint(document: Document) -> None:
    """`GET /flow/{flowId}` is gone (the path has no other method)."""
    del document["paths"]["/flow/{flowId}"]


def drop_unused_endpoint(document: Document) -> None:
    """`GET /license/logs`, which the service never calls, is gone."""
    del document["paths"]["/license/logs"]


def add_optional_assessment_field(document: Document) -> None:
    """Assessments gain an optional `comment` the service does not read."""
    schema(document, "assessment")["properties"]["comment"] = {"type": "string"}
