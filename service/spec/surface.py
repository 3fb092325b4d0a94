"""What one operation of an OpenAPI document exposes: its parameters, request body fields and answer fields.

Fields are flattened into dotted paths (`data[].participation.start`; `[]` is every item of an array), the
notation the endpoint registry declares what the service sends and reads in. Schemas are followed through
`$ref`, `allOf`, `oneOf` and `anyOf` (a field of any branch is a field), to a bounded depth: a recursive
schema ends there rather than looping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema_path import SchemaPath

from .shapes import contents

METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Deeper than anything the service reads; the bound that ends a walk through a recursive schema.
MAX_DEPTH: Final = 8
_TEMPLATE: Final = re.compile(r"\{[^}/]*\}")


@dataclass(frozen=True, slots=True)
class Field:
    """A parameter or a field of a body: its JSON type, whether its parent requires it, its enum if any."""

    type: str
    required: bool = False
    enum: tuple[str, ...] | None = None
    where: str = "body"  # `query`, `path`, `header`, `cookie` for a parameter


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of one path, flattened."""

    method: str  # upper case
    path: str  # the template as the document writes it
    params: dict[str, Field] = field(default_factory=dict)
    body: dict[str, Field] = field(default_factory=dict)
    body_required: bool = False
    success: str | None = None  # the 2xx status whose answer is described
    answer: dict[str, Field] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """`GET /flow/{flowId}`: how a report names it."""
        return f"{self.method} {self.path}"


def key_of(method: str, path: str) -> tuple[str, str]:
    """How an operation is matched across documents: method and path with its parameter names blanked
    (`/flow/{flowId}` and `/flow/{id}` are one endpoint: the client fills the place, not the name)."""
    return method.upper(), _TEMPLATE.sub("{}", path)


def operations(document: SchemaPath) -> dict[tuple[str, str], SchemaPath]:
    """Every operation of the document by `key_of`, as a path into it."""
    found: dict[tuple[str, str], SchemaPath] = {}
    paths = document / "paths"
    for template in _keys(paths):
        item = paths / template
        for method in _keys(item):
            if isinstance(method, str) and method.lower() in METHODS:
                found[key_of(method, str(template))] = item / method
    return found


def flatten(operation: SchemaPath) -> Operation:
    """The operation's parameters (path-level and its own), request body fields and 2xx answer fields."""
    method, template = str(operation.parts[-1]).upper(), str(operation.parts[-2])
    params = {**_parameters(operation.parent / "parameters"), **_parameters(operation / "parameters")}
    body_schema, body_required = _request_body(operation)
    success, answer = _answer(operation)
    return Operation(
        method,
        template,
        params,
        dict(walk(body_schema)) if body_schema is not None else {},
        body_required,
        success,
        dict(walk(answer)) if answer is not None else {},
    )


def walk(schema: SchemaPath, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Field]]:
    """Every field under `schema` as (dotted path, Field)."""
    if depth > MAX_DEPTH:
        return
    declared = contents(schema)
    for combinator in ("allOf", "oneOf", "anyOf"):
        branches = declared.get(combinator)
        for index in range(len(branches) if isinstance(branches, list) else 0):
            yield from walk(schema / combinator / index, prefix, depth + 1)
    properties = declared.get("properties")
    required = declared.get("required")
    needed = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    for name in properties if isinstance(properties, dict) else ():
        here = f"{prefix}.{name}" if prefix else str(name)
        prop = schema / "properties" / name
        yield here, _field(contents(prop), required=name in needed)
        yield from walk(prop, here, depth + 1)
    if isinstance(declared.get("items"), dict):
        items = schema / "items"
        inner = contents(items)
        if not _is_object(inner):
            yield f"{prefix}[]", _field(inner)
        yield from walk(items, f"{prefix}[]", depth + 1)


def type_of(declared: dict[str, Any]) -> str:
    """The JSON type a schema declares; `any` when it declares none (a combinator, or nothing)."""
    kind = declared.get("type")
    if isinstance(kind, str):
        return kind
    if "properties" in declared:
        return "object"
    return "array" if "items" in declared else "any"


def _field(declared: dict[str, Any], *, required: bool = False, where: str = "body") -> Field:
    enum = declared.get("enum")
    values = tuple(sorted(str(v) for v in enum)) if isinstance(enum, list) else None
    return Field(type_of(declared), required, values, where)


def _is_object(declared: dict[str, Any]) -> bool:
    return (
        any(k in declared for k in ("properties", "allOf", "oneOf", "anyOf"))
        or declared.get("type") == "object"
    )


def _parameters(parameters: SchemaPath) -> dict[str, Field]:
    """Parameters by name (a later list wins: an operation's own override its path's)."""
    found: dict[str, Field] = {}
    listed = _read(parameters)
    for index in range(len(listed) if isinstance(listed, list) else 0):
        parameter = contents(parameters / index)
        name, where = parameter.get("name"), parameter.get("in")
        if isinstance(name, str) and isinstance(where, str):
            schema = contents(parameters / index / "schema") if "schema" in parameter else {}
            found[name] = _field(schema, required=parameter.get("required") is True, where=where)
    return found


def _request_body(operation: SchemaPath) -> tuple[SchemaPath | None, bool]:
    """The request body's schema (JSON preferred, else the first media type) and whether it is required."""
    body = contents(operation / "requestBody") if "requestBody" in _keys(operation) else {}
    schema = _media_schema(operation / "requestBody", body)
    return schema, body.get("required") is True


def _answer(operation: SchemaPath) -> tuple[str | None, SchemaPath | None]:
    """The lowest 2xx status that describes an answer, and that answer's schema."""
    responses = operation / "responses"
    for status in sorted(_keys(responses), key=str):
        if str(status).startswith("2"):
            response = contents(responses / status)
            schema = _media_schema(responses / status, response)
            if schema is not None:
                return str(status), schema
    return None, None


def _media_schema(where: SchemaPath, holder: dict[str, Any]) -> SchemaPath | None:
    content = holder.get("content")
    if not isinstance(content, dict) or not content:
        return None
    media = "application/json" if "application/json" in content else next(iter(content))
    described = content[media]
    return (
        where / "content" / media / "schema" if isinstance(described, dict) and "schema" in described else None
    )


def _keys(path: SchemaPath) -> list[Any]:
    found = _read(path)
    return list(found) if isinstance(found, dict) else []


def _read(path: SchemaPath) -> Any:
    """The value at `path` ($ref followed), None where there is none."""
    if not path.exists():
        return None
    with path.open() as value:
        return value


def parent(path: str) -> str:
    """`a.b` -> `a`; `a[].b` -> `a`; `a[]` -> `a`; `a` -> `` (the body itself)."""
    head = path[:-2] if path.endswith("[]") else path.rpartition(".")[0]
    return head[:-2] if head.endswith("[]") else head


def with_ancestors(paths: Iterable[str]) -> set[str]:
    """The paths and every path above them (using `a.b` uses `a`; `a[]` stands for `a`'s items)."""
    found: set[str] = set()
    for path in paths:
        while path:
            found |= {path} if path.endswith("[]") else {path, f"{path}[]"}
            path = parent(path)
    return found


def topmost(paths: Iterable[str]) -> list[str]:
    """The paths none of whose ancestors is among them: a new object is one change, not one per field."""
    chosen = list(paths)
    within = set(chosen)
    return [p for p in chosen if not (parent(p) and with_ancestors([parent(p)]) & within)]


def unchanged_paths(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """The paths written the same in both documents, none of whose references changed: nothing to flatten.

    Only a shortcut (a release leaves most paths alone, and flattening is what takes the time), so it is
    conservative: a reference outside `#/components/` counts as changed.
    """
    sections = set(_mapping(old.get("components"))) | set(_mapping(new.get("components")))
    changed = {
        f"#/components/{section}/{name}"
        for section in sections
        for name in set(_section(old, section)) | set(_section(new, section))
        if _section(old, section).get(name) != _section(new, section).get(name)
    }
    closure: dict[str, set[str]] = {}
    old_paths, new_paths = _mapping(old.get("paths")), _mapping(new.get("paths"))
    return {
        str(path)
        for path, item in new_paths.items()
        if old_paths.get(path) == item and not _refers_to(item, old, closure) & changed
    }


def _section(document: dict[str, Any], section: str) -> dict[str, Any]:
    return _mapping(_mapping(document.get("components")).get(section))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _refers_to(node: Any, document: dict[str, Any], closure: dict[str, set[str]]) -> set[str]:
    """Every `$ref` reachable from `node` through the components it refers to (memoised in `closure`)."""
    found: set[str] = set()
    for ref in _refs(node):
        if ref not in closure:
            closure[ref] = {ref}  # set first: a cycle ends here
            parts = ref.split("/")
            target = (
                _section(document, parts[2]).get(parts[3])
                if len(parts) == 4 and parts[:2] == ["#", "components"]
                else None
            )
            closure[ref] |= _refers_to(target, document, closure) if target is not None else {"(outside)"}
        found |= closure[ref]
    return found


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)
