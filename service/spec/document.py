"""Reading an OpenAPI document, YAML or JSON, into a `SchemaPath` that follows `$ref` (jsonschema-path).

Why jsonschema-path (well kept, by python-openapi): it is how openapi-core and openapi-spec-validator walk a
document, and its `$ref` resolution is `referencing`, the JSON Schema reference implementation's. A
hand-written resolver would miss escaped pointers (`~1`), chains of `$ref` and relative references.

Only references inside the document are followed (no retrieval handlers): a `$ref` to another file or a URL
makes the document unreadable here rather than starting a download.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import orjson
import yaml
from jsonschema_path import SchemaPath
from referencing.exceptions import Unresolvable

from . import SNAPSHOT_PATH

# UNIwise's document is about 0.6 MB; anything far larger is not one, and YAML is slow to parse.
MAX_BYTES: Final = 32 * 1024 * 1024
_RESOLVED_CACHE: Final = 65_536
# libyaml's loader when PyYAML was built with it (ten times faster), else the pure-Python safe one.
_YAML_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DocumentError(ValueError):
    """Why a document cannot be used: one line, naming the file, never its content."""


def read_document(path: Path) -> dict[str, Any]:
    """The OpenAPI 3 document at `path` (JSON, or YAML when it is not JSON); `DocumentError` otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_BYTES:
        raise DocumentError(f"{path}: {len(raw)} bytes, more than an OpenAPI document ({MAX_BYTES} at most)")
    document = _parse(path, raw)
    if not isinstance(document, dict):
        raise DocumentError(f"{path}: not an OpenAPI document (the top level is not a mapping)")
    version = document.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise DocumentError(f"{path}: not an OpenAPI 3 document (no `openapi: 3.x` at the top level)")
    if not isinstance(document.get("paths"), dict):
        raise DocumentError(f"{path}: an OpenAPI document without `paths`")
    components = document.get("components", {})
    if not isinstance(components, dict) or not all(isinstance(v, dict) for v in components.values()):
        raise DocumentError(f"{path}: `components` is not a mapping of mappings")
    return document


def _parse(path: Path, raw: bytes) -> Any:
    """JSON first (fast, and what the bundled snapshot is), then YAML (what UNIwise publishes)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return yaml.load(raw, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader (C or Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DocumentError(f"{path}: neither JSON nor YAML{where}") from None


@functools.cache
def snapshot() -> dict[str, Any]:
    """The bundled snapshot, parsed once per process (callers must not change it)."""
    document: dict[str, Any] = orjson.loads(SNAPSHOT_PATH.read_bytes())
    return document


def navigable(document: dict[str, Any]) -> SchemaPath:
    """`document` as a `SchemaPath`: `path / "paths" / "/flow/{flowId}"` follows every `$ref` on the way."""
    # The cache keeps each resolved node: a diff visits the shared envelopes hundreds of times (3x faster).
    return SchemaPath.from_dict(document, handlers={}, resolved_cache_maxsize=_RESOLVED_CACHE)


def unusable(path: Path | str, exc: Exception) -> DocumentError:
    """The one line for a document whose structure stopped the comparison (never the exception's own text:
    `referencing` quotes the whole document in it)."""
    if isinstance(exc, Unresolvable):
        return DocumentError(f"{path}: a $ref cannot be resolved ({str(exc.ref)[:200]})")
    return DocumentError(f"{path}: not structured as OpenAPI 3 describes ({type(exc).__name__})")
