"""The shapes the snapshot's own examples show, as schemas a validator can use: `null` where they show it.

UNIwise's examples answer success as ``{"success": true, "data": ..., "error": null}`` (28 of them), and
``"data": null`` where there is no data, although the schemas declare `error` and `data` as non-nullable
objects. A WISEflow that answers like its examples is what the service will most likely meet, so its
validation must accept them, and the schema's own form (those parts left out) must still pass.

The rule is derived from the document, not listed by hand: wherever an example shows a property as null
that its schema does not allow to be null, every property of that name with the same declared schema
(the same `$ref`, or the same inline schema) becomes nullable in every component schema. So `error`
(declared `$ref: api-error-response` in most envelopes) becomes nullable in all of them, `data` only
where it is declared a plain object, as in the examples, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import orjson
from jsonschema_path import SchemaPath

from .document import navigable

# Keys that describe a schema without constraining it: two declarations differing only in these are one.
_ANNOTATIONS: Final = frozenset({"example", "examples", "description", "title"})
# Examples are shallow; this only bounds a walk through a recursive schema.
_MAX_DEPTH: Final = 12

Shown = frozenset[tuple[str, str]]  # (property name, its declaration as canonical JSON)


def shown_null(document: dict[str, Any]) -> Shown:
    """Each (property, declaration) an example of `document` shows as null although it is not nullable."""
    root = navigable(document)
    found: set[tuple[str, str]] = set()
    for parts, node in _nodes(document, ()):
        here = _at(root, parts)
        if "example" in node:
            _walk(here / "schema" if "schema" in node else here, node["example"], found, 0)
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict) and "example" in prop and prop["example"] is None:
                    _note(here / "properties" / name, name, found)
    return frozenset(found)


def as_examples_show(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of `document` whose component schemas accept null where its examples show it (shallow copies)."""
    shown = shown_null(document)
    names = {name for name, _ in shown}
    root = navigable(document)
    schemas = dict(document.get("components", {}).get("schemas", {}))
    for schema_name, schema in list(schemas.items()):
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(properties, dict):
            continue
        widened = dict(properties)
        for name in names & set(properties):
            declared = contents(root / "components" / "schemas" / schema_name / "properties" / name)
            if declared.get("nullable") is not True and (name, declaration(declared)) in shown:
                widened[name] = {**declared, "nullable": True}
        if widened != properties:
            schemas[schema_name] = {**schema, "properties": widened}
    return {**document, "components": {**document.get("components", {}), "schemas": schemas}}


def contents(path: SchemaPath) -> dict[str, Any]:
    """The schema at `path` with its `$ref` followed; {} when it is not a mapping."""
    with path.open() as found:
        return found if isinstance(found, dict) else {}


def declaration(schema: dict[str, Any]) -> str:
    """What a schema declares, without its annotations, as canonical JSON (to compare two declarations)."""
    kept = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _walk(schema: SchemaPath, example: Any, found: set[tuple[str, str]], depth: int) -> None:
    """Follow `example` through `schema`, noting each property it shows null."""
    if depth > _MAX_DEPTH:
        return
    declared = contents(schema)
    if isinstance(example, dict) and isinstance(declared.get("properties"), dict):
        for key, value in example.items():
            if key not in declared["properties"]:
                continue
            if value is None:
                _note(schema / "properties" / key, key, found)
            else:
                _walk(schema / "properties" / key, value, found, depth + 1)
    elif isinstance(example, list) and isinstance(declared.get("items"), dict):
        for value in example:
            _walk(schema / "items", value, found, depth + 1)


def _note(prop: SchemaPath, name: str, found: set[tuple[str, str]]) -> None:
    declared = contents(prop)
    if declared.get("nullable") is not True:
        found.add((name, declaration(declared)))


def _nodes(node: Any, parts: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every mapping of the document that holds an example or properties, with where it is."""
    if isinstance(node, dict):
        if "example" in node or "properties" in node:
            yield parts, node
        for key, value in node.items():
            if key not in ("example", "examples"):  # data, not schemas
                yield from _nodes(value, (*parts, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _nodes(value, (*parts, str(index)))


def _at(root: SchemaPath, parts: tuple[str, ...]) -> SchemaPath:
    here = root
    for part in parts:
        here = here / (int(part) if part.isdigit() else part)
    return here
