"""Response shapes of the bundled OpenAPI snapshot (`service/spec/openapi-1.34.0.json`), checked at runtime.

The shapes are the snapshot's as its own examples show them (`service.spec.shapes`): `"error": null` on a
success, `"data": null` where there is none, accepted besides the schema's own form (those parts left out).

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
from typing import TYPE_CHECKING, Any, Final

from service.spec import SNAPSHOT_VERSION

if TYPE_CHECKING:
    from openapi_schema_validator import OAS30Validator

MAX_PROBLEMS: Final = 3


@functools.cache
def _components() -> dict[str, Any]:
    """The snapshot's `components` as its examples show them, derived once."""
    # Imported here: jsonschema-path takes a while to import, and only a preflight run needs it.
    from service.spec.document import snapshot
    from service.spec.shapes import as_examples_show

    components: dict[str, Any] = as_examples_show(snapshot())["components"]
    return components


@functools.cache
def _validator(schema: str) -> OAS30Validator:
    # Imported here, not at the top: it takes seconds (it loads pydantic), and every command of the CLI
    # imports this module through its parser; only a preflight run should pay for it.
    from openapi_schema_validator import OAS30Validator

    components = _components()
    if schema not in components["schemas"]:
        raise KeyError(f"no schema {schema!r} in openapi-{SNAPSHOT_VERSION}.json")
    return OAS30Validator({"components": components, "$ref": f"#/components/schemas/{schema}"})


def problems(schema: str, instance: Any) -> list[str]:
    """Where `instance` departs from the component schema `schema`: at most a few, without values."""
    found = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    # One place can break two rules that read alike (`type`, and null where not nullable): said once.
    unique = list(dict.fromkeys(_describe(error) for error in found))
    described = unique[:MAX_PROBLEMS]
    if len(unique) > MAX_PROBLEMS:
        described.append(f"and {len(unique) - MAX_PROBLEMS} more")
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
