"""Validation of simulator responses against `openapi-1.34.0.json`, as the snapshot's own examples show it.

The schemas are the snapshot's with `null` allowed where its examples show null (`service.spec.shapes`):
`"error": null` on a success, `"data": null` where there is none. The schema's own form still passes.

`check_response` validates a documented operation's response with openapi-core (status, media type and
body schema). `check_schema` validates a body against one component schema: for the answers the spec
does not document (401, 429, 500, 503) or documents without a body (404 of `GET /flow/{flowId}`), whose
shape is WISEflow's common error envelope, `general-api-error-response`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator

from service.spec.document import snapshot
from service.spec.shapes import as_examples_show

HOST = "https://europe-api.wiseflow.net"


@functools.cache
def derived() -> dict[str, Any]:
    """The snapshot as its examples show it, derived once per session."""
    return as_examples_show(snapshot())


@functools.cache
def openapi() -> OpenAPI:
    """The spec, loaded once per session."""
    # The published spec fails its own meta-validation (its oauth2 flow has no `scopes`), so that check is
    # off; response validation against its schemas stays strict.
    return OpenAPI.from_dict(derived(), config=Config(spec_validator_cls=None))


def _components() -> dict[str, Any]:
    components: dict[str, Any] = derived()["components"]
    return components


def check_response(
    method: str,
    path: str,
    status: int,
    body: bytes,
    *,
    view_args: dict[str, Any] | None = None,
    content_type: str = "application/json",
) -> None:
    """Raise unless `body` with `status` is a documented response of `method path` (path under /v1)."""
    request = MockRequest(HOST, method.lower(), "/v1" + path, view_args=view_args)
    response = MockResponse(body, status_code=status, content_type=content_type)
    openapi().validate_response(request, response)


def check_schema(name: str, instance: Any) -> None:
    """Raise unless `instance` is valid for the component schema `name`."""
    root = {"components": _components(), "$ref": f"#/components/schemas/{name}"}
    errors = [e.message for e in OAS30Validator(root).iter_errors(instance)]
    if errors:
        raise AssertionError(f"{name}: {errors[:5]} in {json.dumps(instance)[:300]}")
