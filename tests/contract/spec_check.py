"""Validation of simulator responses against `openapi-1.34.0.json`.

`check_response` validates a documented operation's response with openapi-core (status, media type and
body schema). `check_schema` validates a body against one component schema: for the answers the spec
does not document (401, 429, 500, 503) or documents without a body (404 of `GET /flow/{flowId}`), whose
shape is WISEflow's common error envelope, `general-api-error-response`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import orjson
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator

import service

SPEC_PATH = Path(service.__file__).parent / "spec" / "openapi-1.34.0.json"
HOST = "https://europe-api.wiseflow.net"


@functools.cache
def openapi() -> OpenAPI:
    """The spec, loaded once per session."""
    # The published spec fails its own meta-validation (its oauth2 flow has no `scopes`), so that check is
    # off; response validation against its schemas stays strict.
    return OpenAPI.from_file_path(str(SPEC_PATH), config=Config(spec_validator_cls=None))


@functools.cache
def _components() -> dict[str, Any]:
    spec = orjson.loads(SPEC_PATH.read_bytes())
    components: dict[str, Any] = spec["components"]
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
