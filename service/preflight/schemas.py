"""Response shapes of the bundled OpenAPI snapshot (`service/spec/openapi-1.34.0.json`), checked at runtime.

Why openapi-schema-validator (a runtime dependency, not hand-written): it is jsonschema (the reference
JSON Schema implementation, well kept) with the OpenAPI 3.0 dialect the snapshot is written in
(`nullable`, `format`, `readOnly`), maintained by the python-openapi project beside openapi-core, which the
contract tests already use. A home-made validator would have to re-implement `$ref`, `allOf`, `nullable`
and formats, and would drift from what the tests check.

Problems are reported by where they are and what the schema expected, never with the value that was
found: an answer may hold names or e-mail addresses, which must not reach a report.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from openapi_schema_validator import OAS30Validator

SPEC_PATH: Final = Path(__file__).resolve().parents[1] / "spec" / "openapi-1.34.0.json"
SPEC_VERSION: Final = "1.34.0"
MAX_PROBLEMS: Final = 3


@functools.cache
def _components() -> dict[str, Any]:
    """The snapshot's `components`, parsed once."""
    spec = orjson.loads(SPEC_PATH.read_bytes())
    components: dict[str, Any] = spec["components"]
    return components


@functools.cache
def _validator(schema: str) -> OAS30Validator:
    # Imported here, not at the top: it takes seconds (it loads pydantic), and every command of the CLI
    # imports this module through its parser; only a preflight run should pay for it.
    from openapi_schema_validator import OAS30Validator

    components = _components()
    if schema not in components["schemas"]:
        raise KeyError(f"no schema {schema!r} in openapi-{SPEC_VERSION}.json")
    return OAS30Validator({"components": components, "$ref": f"#/components/schemas/{schema}"})


def problems(schema: str, instance: Any) -> list[str]:
    """Where `instance` departs from the component schema `schema`: at most a few, without values."""
    found = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    described = [_describe(error) for error in found[:MAX_PROBLEMS]]
    if len(found) > MAX_PROBLEMS:
        described.append(f"and {len(found) - MAX_PROBLEMS} more")
    return described


def _describe(error: Any) -> str:
    """`data/0/state: expected type integer`: the place and the schema's rule, not the value."""
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    rule = error.validator
    if rule == "required":
        # "'sequence' is a required property": the name comes from the schema, not from the answer.
        return f"{where}: {error.message}"
    if rule == "additionalProperties":
        return f"{where}: properties the schema does not allow"
    expected = error.validator_value
    if rule == "enum":
        return f"{where}: not one of the documented values"
    return f"{where}: expected {rule} {expected}"
