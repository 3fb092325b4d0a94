"""The examples the OpenAPI snapshot gives for an operation's answers, literal and composed from their parts.

A schema's own `example` is taken as written. Where a schema has none, an example is composed the way API
tools render one: each property's example (recursively), the first item's for an array, the first enum
value. So an envelope without an example of its own (`flows-search-api-response`) still gets one, from the
examples of its `data` records and its `pagination`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from jsonschema_path import SchemaPath

from service.spec.shapes import contents

MISSING: Final = object()
MAX_DEPTH: Final = 10


def answer_examples(operation: SchemaPath) -> Iterator[tuple[str, str, Any]]:
    """(status, how it was found, body) for every answer of `operation` with a JSON schema."""
    responses = operation / "responses"
    with responses.open() as listed:
        statuses = sorted(listed, key=str)
    for status in statuses:
        media = responses / status / "content" / "application/json"
        if not (media / "schema").exists():
            continue
        with media.open() as described:
            if "example" in described:
                yield str(status), "media example", described["example"]
        schema = contents(media / "schema")
        if "example" in schema:
            yield str(status), "the schema's example", schema["example"]
        else:
            composed = compose(media / "schema")
            if composed is not MISSING:
                yield str(status), "composed from its parts' examples", composed


def compose(schema: SchemaPath, *, depth: int = 0) -> Any:
    """An example of `schema`: its own when it has one, else built from its parts; or MISSING."""
    declared = contents(schema)
    if depth > MAX_DEPTH:
        return MISSING
    if "example" in declared:
        return declared["example"]
    if isinstance(declared.get("allOf"), list):
        merged: dict[str, Any] = {}
        for index in range(len(declared["allOf"])):
            part = compose(schema / "allOf" / index, depth=depth + 1)
            merged.update(part if isinstance(part, dict) else {})
        return merged
    for combinator in ("oneOf", "anyOf"):
        if isinstance(declared.get(combinator), list) and declared[combinator]:
            return compose(schema / combinator / 0, depth=depth + 1)
    if isinstance(declared.get("properties"), dict):
        parts = {
            name: compose(schema / "properties" / name, depth=depth + 1) for name in declared["properties"]
        }
        return {name: value for name, value in parts.items() if value is not MISSING}
    if isinstance(declared.get("items"), dict):
        item = compose(schema / "items", depth=depth + 1)
        return [] if item is MISSING else [item]
    enum = declared.get("enum")
    return enum[0] if isinstance(enum, list) and enum else MISSING
