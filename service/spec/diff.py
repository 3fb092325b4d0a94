"""`spec diff`: a newer WISEflow OpenAPI document, judged by what the service uses of it.

The judgement is ours and hand-written, because only the service knows what it depends on: an OpenAPI
library can say what changed, not what matters. What the service uses is declared once, in the endpoint
registry (`service.adapters.wiseflow.endpoints`): the endpoints it calls, what it sends, what it reads.

- breaking: an endpoint it calls is gone; a field it reads is gone or changed type; a parameter or body
  field it sends is gone or changed type; a new required parameter or body field it does not send; a
  webhook event it subscribes to is no longer offered.
- compatible: any other change to an endpoint it calls (new optional fields, fields it does not read).
- unused: changes to endpoints it does not call, and webhook events it does not subscribe to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from jsonschema_path import SchemaPath

from service.adapters.wiseflow.endpoints import ENDPOINTS, HANDLED_EVENTS, Endpoint

from .document import navigable
from .surface import (
    Field,
    Operation,
    flatten,
    key_of,
    operations,
    parent,
    topmost,
    unchanged_paths,
    with_ancestors,
)  # fmt: skip

BREAKING: Final = "breaking"
COMPATIBLE: Final = "compatible"
UNUSED: Final = "unused"
_ORDER: Final = {BREAKING: 0, COMPATIBLE: 1, UNUSED: 2}
# How many names an unused endpoint's summary lists per kind of change before "and N more".
_NAMES: Final = 4

Said = tuple[str, str]  # (kind, detail) about one endpoint
Ops = dict[tuple[str, str], SchemaPath]


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: how it bears on the service, the endpoint (None for the document), what changed."""

    kind: str
    endpoint: str | None
    detail: str

    def to_json(self) -> dict[str, str | None]:
        """The contract's change object."""
        return {"kind": self.kind, "endpoint": self.endpoint, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Diff:
    """Every difference between the bundled snapshot and a newer document, breaking ones first."""

    old_version: str
    new_version: str
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> bool:
        """True when something the service uses breaks."""
        return any(c.kind == BREAKING for c in self.changes)

    def to_json(self) -> dict[str, object]:
        """The contract's document: `{"breaking": bool, "changes": [...]}`."""
        return {"breaking": self.breaking, "changes": [c.to_json() for c in self.changes]}


def compare(
    old_document: dict[str, Any],
    new_document: dict[str, Any],
    used: Sequence[Endpoint] = ENDPOINTS,
    events: Sequence[str] = HANDLED_EVENTS,
) -> Diff:
    """How `new` differs from `old`, judged by the endpoints in `used` and the webhook `events` handled.

    Raises `referencing.exceptions.Unresolvable` for a `$ref` that leads nowhere.
    """
    old, new = navigable(old_document), navigable(new_document)
    old_ops, new_ops = operations(old), operations(new)
    versions = (_version(old), _version(new))
    changes: list[Change] = []
    if versions[0] != versions[1]:
        changes.append(Change(COMPATIBLE, None, f"document version {versions[0]} -> {versions[1]}"))
    for endpoint in used:
        key = key_of(endpoint.method, endpoint.path)
        if key not in new_ops:
            detail = f"gone from the document; the service calls it for: {endpoint.purpose}"
            changes.append(Change(BREAKING, f"{endpoint.method} {endpoint.path}", detail))
            continue
        before = flatten(old_ops[key]) if key in old_ops else Operation(endpoint.method, endpoint.path)
        after = flatten(new_ops[key])
        changes += [Change(k, after.name, d) for k, d in judge_used(endpoint, before, after, events)]
    unchanged = unchanged_paths(old_document, new_document)
    changes += _unused(old_ops, new_ops, {key_of(e.method, e.path) for e in used}, unchanged)
    ordered = sorted(changes, key=lambda c: _ORDER[c.kind])  # stable: registry order within a kind
    return Diff(versions[0], versions[1], tuple(ordered))


def judge_used(endpoint: Endpoint, before: Operation, after: Operation, events: Sequence[str]) -> list[Said]:
    """Every change to one endpoint the service calls, each judged by what the service sends and reads."""
    found = [
        *_reads(endpoint, before, after),
        *_params(endpoint, before, after),
        *_body(endpoint, before, after),
        *_events(endpoint, before, after, events),
    ]
    if before.success and after.success and before.success != after.success:
        found.append((COMPATIBLE, f"answers {after.success} where it answered {before.success} (any 2xx does)"))
    return found


def _reads(endpoint: Endpoint, before: Operation, after: Operation) -> list[Said]:
    """The answer: a field read that is gone or retyped breaks; the rest is compatible."""
    found: list[Said] = []
    for path in endpoint.reads:
        was, now = before.answer.get(path), after.answer.get(path)
        if was is None:
            continue  # not in the snapshot either: nothing changed
        what = f"answer field `{path}`"
        if now is None:
            found.append((BREAKING, f"{what} is gone; the service reads it"))
        elif _retyped(was, now):
            found.append((BREAKING, f"{what} changed type ({was.type} -> {now.type}); the service reads it"))
        elif was.enum != now.enum and now.enum is not None:
            found.append((COMPATIBLE, f"{what} (read) now has the values {', '.join(now.enum)}"))
    read = with_ancestors(endpoint.reads)
    return found + _unjudged("answer field", before.answer, after.answer, read, "not read")


def _params(endpoint: Endpoint, before: Operation, after: Operation) -> list[Said]:
    """Query and header parameters (a path parameter is a place in the path, matched by position)."""
    found: list[Said] = []
    for name, now in after.params.items():
        was, what = before.params.get(name), f"{now.where} parameter `{name}`"
        if now.where == "path":
            continue
        if name in endpoint.params and was is not None and _retyped(was, now):
            found.append((BREAKING, f"{what} changed type ({was.type} -> {now.type}); the service sends it"))
        elif name not in endpoint.params and now.required and not (was is not None and was.required):
            found.append(
                (BREAKING, f"{'new' if was is None else 'now'} required {what}; the service does not send it")
            )
        elif was is None and name not in endpoint.params:
            found.append((COMPATIBLE, f"new optional {what}"))
    for name, was in before.params.items():
        if was.where != "path" and name not in after.params:
            sent = name in endpoint.params
            tail = "the service sends it" if sent else "not sent"
            found.append((BREAKING if sent else COMPATIBLE, f"{was.where} parameter `{name}` is gone; {tail}"))
    return found


def _body(endpoint: Endpoint, before: Operation, after: Operation) -> list[Said]:
    """The request body: a field sent that is gone or retyped, or a new required one not sent, breaks."""
    found: list[Said] = []
    sent = with_ancestors(endpoint.body)
    if after.body_required and not before.body_required and not endpoint.body:
        found.append((BREAKING, "now requires a request body; the service sends none"))
    for path, now in after.body.items():
        was, what = before.body.get(path), f"request field `{path}`"
        if path in sent and was is not None and _retyped(was, now):
            found.append((BREAKING, f"{what} changed type ({was.type} -> {now.type}); the service sends it"))
        elif _newly_required(path, was, now, sent):
            found.append((BREAKING, f"new required {what}; the service does not send it"))
    for path in endpoint.body:
        if path in before.body and path not in after.body:
            found.append((BREAKING, f"request field `{path}` is gone; the service sends it"))
    return found + _unjudged("request field", before.body, after.body, sent, "not sent")


def _newly_required(path: str, was: Field | None, now: Field, sent: set[str]) -> bool:
    """Required now and not before, not sent, in the body itself or in an object the service sends."""
    in_sent_object = parent(path) in sent | {""}
    return path not in sent and now.required and in_sent_object and not (was is not None and was.required)


def _events(endpoint: Endpoint, before: Operation, after: Operation, events: Sequence[str]) -> list[Said]:
    """The webhook events a subscription may name: each the service subscribes to must still be offered."""
    was, now = before.body.get("events[]"), after.body.get("events[]")
    if "events" not in endpoint.body or now is None or now.enum is None:
        return []
    found: list[Said] = []
    gone = [e for e in events if e not in now.enum]
    if gone:
        found.append(
            (BREAKING, f"webhook event(s) {', '.join(gone)} no longer offered; the service subscribes to them")
        )
    offered = was.enum if was is not None and was.enum is not None else ()
    new = [e for e in now.enum if e not in events and e not in offered]
    if new:
        found.append((UNUSED, f"new webhook event(s) {', '.join(new)}; the service does not subscribe to them"))
    return found


def _unjudged(
    what: str, before: dict[str, Field], after: dict[str, Field], used: set[str], why: str
) -> list[Said]:
    """Fields the service does not use that were added, are gone or changed type: compatible, top-most only."""
    added = topmost(p for p in after if p not in before and p not in used)
    gone = topmost(p for p in before if p not in after and p not in used)
    retyped = [p for p in before if p in after and p not in used and _retyped(before[p], after[p])]
    return [
        *((COMPATIBLE, f"new {what} `{p}` ({why})") for p in added),
        *((COMPATIBLE, f"{what} `{p}` is gone ({why})") for p in gone),
        *(
            (COMPATIBLE, f"{what} `{p}` changed type ({before[p].type} -> {after[p].type}; {why})")
            for p in retyped
        ),
    ]


def _unused(old_ops: Ops, new_ops: Ops, used: set[tuple[str, str]], unchanged: set[str]) -> list[Change]:
    """Endpoints the service does not call: added, gone or changed, one line each."""
    added, gone = sorted(new_ops.keys() - old_ops.keys() - used), sorted(old_ops.keys() - new_ops.keys() - used)
    changes = [Change(UNUSED, _name(new_ops[k]), "new endpoint; the service does not call it") for k in added]
    changes += [
        Change(UNUSED, _name(old_ops[k]), "gone from the document; the service does not call it") for k in gone
    ]
    for key in sorted((old_ops.keys() & new_ops.keys()) - used):
        if str(new_ops[key].parts[-2]) in unchanged:
            continue
        after = flatten(new_ops[key])
        summary = _summary(flatten(old_ops[key]), after)
        if summary:
            changes.append(Change(UNUSED, after.name, f"changed ({summary}); the service does not call it"))
    return changes


def _summary(before: Operation, after: Operation) -> str:
    """What changed in an operation, briefly: parameters, request and answer fields added, gone, changed."""
    parts: list[str] = []
    sides = (("parameters", before.params, after.params), ("request fields", before.body, after.body))
    for what, old, new in (*sides, ("answer fields", before.answer, after.answer)):
        added, gone = topmost(p for p in new if p not in old), topmost(p for p in old if p not in new)
        changed = [p for p in old if p in new and old[p] != new[p]]
        for verb, names in (("added", added), ("gone", gone), ("changed", changed)):
            if names:
                more = f" and {len(names) - _NAMES} more" if len(names) > _NAMES else ""
                parts.append(f"{what} {verb}: {', '.join(f'`{n}`' for n in names[:_NAMES])}{more}")
    if (before.body_required, before.success) != (after.body_required, after.success):
        parts.append("request body or answer status changed")
    return "; ".join(parts)


def _retyped(was: Field, now: Field) -> bool:
    """A different JSON type; `any` (a schema that declares none) is judged compatible with every type."""
    return was.type != now.type and "any" not in (was.type, now.type)


def _name(operation: SchemaPath) -> str:
    return f"{str(operation.parts[-1]).upper()} {operation.parts[-2]}"


def _version(document: SchemaPath) -> str:
    info = document / "info" / "version"
    if not info.exists():
        return "unknown"
    with info.open() as version:
        return str(version)
