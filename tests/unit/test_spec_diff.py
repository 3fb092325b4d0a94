"""`spec diff`'s judgement: what a newer OpenAPI document changes, by what the service sends and reads."""

from __future__ import annotations

from typing import Any

import pytest
from referencing.exceptions import Unresolvable

from service.spec.diff import Diff, compare
from service.spec.document import snapshot
from service.spec.report import render
from tests.spec_docs import (
    Document,
    add_optional_assessment_field,
    drop_flow_endpoint,
    drop_search_state,
    drop_unused_endpoint,
    release,
    schema,
)


def judged(*changes: Any) -> Diff:
    """The snapshot compared with a release made of `changes`."""
    return compare(snapshot(), release(*changes))


def said(diff: Diff) -> list[tuple[str, str | None, str]]:
    """Each change as (kind, endpoint, detail)."""
    return [(c.kind, c.endpoint, c.detail) for c in diff.changes]


def test_the_same_document_has_no_differences() -> None:
    """The snapshot against itself: nothing to report, nothing breaks."""
    diff = compare(snapshot(), snapshot())
    assert (diff.breaking, diff.changes) == (False, ())
    assert diff.to_json() == {"breaking": False, "changes": []}


def test_a_removed_field_the_service_reads_breaks_naming_endpoint_and_field() -> None:
    """`state` gone from the search's records: breaking, on `POST /flows/search`, naming `data[].state`."""
    diff = judged(drop_search_state)
    assert diff.breaking
    assert (
        "breaking",
        "POST /flows/search",
        "answer field `data[].state` is gone; the service reads it",
    ) in said(diff)


def test_a_removed_endpoint_the_service_calls_breaks() -> None:
    """`GET /flow/{flowId}` gone: breaking, saying what the service calls it for."""
    breaking = [c for c in judged(drop_flow_endpoint).changes if c.kind == "breaking"]
    assert [c.endpoint for c in breaking] == ["GET /flow/{flowId}"]
    assert breaking[0].detail.startswith("gone from the document; the service calls it for: a flow's state")


def test_unused_removals_and_optional_additions_are_reported_not_breaking() -> None:
    """An endpoint the service does not call gone, an optional field added to one it calls: reported as
    unused and compatible, and the version change noted; nothing breaks."""
    diff = judged(drop_unused_endpoint, add_optional_assessment_field)
    assert not diff.breaking
    assert said(diff)[:2] == [
        ("compatible", None, "document version 1.34.0 -> 1.35.0"),
        ("compatible", "GET /flow/{flowId}/assessments", "new answer field `[].comment` (not read)"),
    ]
    assert ("unused", "GET /license/logs", "gone from the document; the service does not call it") in said(diff)
    assert {c.kind for c in diff.changes} == {"compatible", "unused"}


def _retype_user_id(document: Document) -> None:
    schema(document, "basic-user")["properties"]["id"] = {"type": "string"}


def _require_tenant(document: Document) -> None:
    parameters = document["paths"]["/flows/search"]["post"]["parameters"]
    parameters.append({"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}})


def _optional_sort(document: Document) -> None:
    parameters = document["paths"]["/flows/search"]["post"]["parameters"]
    parameters.append({"name": "sort", "in": "query", "schema": {"type": "string"}})


def _drop_limit(document: Document) -> None:
    parameters = document["paths"]["/flows/search"]["post"]["parameters"]
    parameters[:] = [p for p in parameters if p["name"] != "limit"]


def _require_flow_id_in_events(document: Document) -> None:
    schema(document, "events-request")["required"] = ["flowId"]


def _require_events_types(document: Document) -> None:
    schema(document, "events-request")["required"] = ["types"]


def _swap_final_grade(document: Document) -> None:
    enum = schema(document, "webhook-event-enum")["enum"]
    enum[:] = [e for e in enum if e != "FINAL_GRADE"] + ["EXAM_CANCELLED"]


def _rename_path_parameter(document: Document) -> None:
    item = document["paths"].pop("/flow/{flowId}")
    item["get"]["parameters"][0]["name"] = "id"
    document["paths"]["/flow/{id}"] = item


@pytest.mark.parametrize(
    ("change", "kind", "endpoint", "detail"),
    [
        (_retype_user_id, "breaking", "GET /flows/{flowId}/participants",
         "answer field `data[].user.id` changed type (integer -> string); the service reads it"),
        (_require_tenant, "breaking", "POST /flows/search",
         "new required query parameter `tenant`; the service does not send it"),
        (_optional_sort, "compatible", "POST /flows/search", "new optional query parameter `sort`"),
        (_drop_limit, "breaking", "POST /flows/search",
         "query parameter `limit` is gone; the service sends it"),
        (_require_flow_id_in_events, "breaking", "POST /participation-events",
         "new required request field `flowId`; the service does not send it"),
        (_swap_final_grade, "breaking", "POST /webhooks",
         "webhook event(s) FINAL_GRADE no longer offered; the service subscribes to them"),
        (_swap_final_grade, "unused", "POST /webhooks",
         "new webhook event(s) EXAM_CANCELLED; the service does not subscribe to them"),
    ],
)  # fmt: skip
def test_each_kind_of_change_is_judged_by_what_the_service_sends_and_reads(
    change: Any, kind: str, endpoint: str, detail: str
) -> None:
    """A retyped field read, a new required parameter or body field not sent, a parameter sent that is gone
    and a webhook event subscribed to that is no longer offered break; new optional parts do not."""
    assert (kind, endpoint, detail) in said(judged(change))


def test_what_the_service_already_sends_is_not_a_new_requirement() -> None:
    """`types` made required in `POST /participation-events`: the client sends it, nothing breaks; and a
    path parameter renamed (`{flowId}` -> `{id}`) is the same place in the path: nothing breaks either."""
    assert not judged(_require_events_types).breaking
    renamed = judged(_rename_path_parameter)
    assert not renamed.breaking
    assert [c.endpoint for c in renamed.changes if c.endpoint and "/flow/{" in c.endpoint] == []


def test_a_ref_that_leads_nowhere_is_unresolvable() -> None:
    """A component removed while still referred to: the comparison stops with `Unresolvable`."""

    def drop_component(document: Document) -> None:
        del document["components"]["schemas"]["basic-flow"]

    with pytest.raises(Unresolvable):
        judged(drop_component)


def test_markdown_names_the_verdict_and_each_change_in_a_table() -> None:
    """The md rendering: the two versions, the verdict with its counts, one escaped row per change."""
    text = render(judged(drop_search_state, drop_unused_endpoint), "md", "new|api.yaml")
    assert "the bundled snapshot (1.34.0) with `new\\|api.yaml` (1.35.0)" in text
    assert "**breaking**" in text
    assert (
        "| breaking | POST /flows/search | answer field `data[].state` is gone; the service reads it |" in text
    )
    assert "| unused | GET /license/logs |" in text
