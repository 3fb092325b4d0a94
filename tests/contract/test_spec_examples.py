"""Every example the OpenAPI snapshot gives for an answer the service uses, through preflight's validator
and through the client's parsers: the service accepts WISEflow answering exactly as it documents itself.

The webhook deliveries themselves are not in the snapshot (their body is assumed, see docs/wiseflow.md);
the webhook events a subscription may name are, and each one the service handles must be among them.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.adapters.wiseflow.endpoints import ENDPOINTS, HANDLED_EVENTS
from service.adapters.wiseflow.records import Reply, error_for
from service.preflight import schemas
from service.spec.document import navigable, snapshot
from service.spec.surface import key_of, operations
from tests.contract.examples import answer_examples
from tests.contract.parsers import PARSERS


def _examples() -> list[Any]:
    """(endpoint, status, how it was found, component schema, body) for each example of a used endpoint."""
    found = []
    ops = operations(navigable(snapshot()))
    for e in ENDPOINTS:
        for status, how, body in answer_examples(ops[key_of(e.method, e.path)]):
            media = snapshot()["paths"][e.path][e.method.lower()]["responses"][status]["content"]
            schema = media["application/json"]["schema"]["$ref"].rpartition("/")[2]
            found.append(
                pytest.param(
                    f"{e.method} {e.path}", status, schema, body, id=f"{e.method} {e.path} {status} {how}"
                )
            )
    return found


EXAMPLES = _examples()


def test_every_endpoint_the_service_uses_has_an_example_of_success() -> None:
    """No used endpoint goes unchecked: each has at least one 2xx example, and some show `"error": null`."""
    successes = {p.values[0] for p in EXAMPLES if str(p.values[1]).startswith("2")}
    assert successes == {f"{e.method} {e.path}" for e in ENDPOINTS}
    shown_null = [p for p in EXAMPLES if isinstance(p.values[3], dict) and p.values[3].get("error", 0) is None]
    assert shown_null


@pytest.mark.parametrize(("endpoint", "status", "schema", "body"), EXAMPLES)
def test_each_example_passes_preflight_s_validation(endpoint: str, status: str, schema: str, body: Any) -> None:
    """The validator preflight uses accepts the snapshot's own example of this answer."""
    assert schemas.problems(schema, body) == []


@pytest.mark.parametrize(("endpoint", "status", "schema", "body"), EXAMPLES)
def test_each_example_is_understood_by_the_client(endpoint: str, status: str, schema: str, body: Any) -> None:
    """A 2xx example goes through the client's parsers without an error; an error example becomes the
    client's error for that status, with the reason label of its envelope."""
    if status.startswith("2"):
        PARSERS[endpoint](body)
        return
    reply = Reply(endpoint.split()[0], "/", int(status), {}, body, None, 1)
    error = error_for(reply, None)
    assert (error.status, "(reason)" in error.message) == (int(status), isinstance(body.get("error"), dict))


def test_the_webhook_events_the_service_handles_are_offered() -> None:
    """Every event of SYNC_WEBHOOK_EVENTS' choice is one a subscription may name (webhook-event-enum)."""
    offered = snapshot()["components"]["schemas"]["webhook-event-enum"]["enum"]
    assert set(HANDLED_EVENTS) <= set(offered)
