"""What one captured webhook delivery says about the webhook assumptions. Pure; time is in the delivery.

Each function answers one question with the project's own verifier and parser (`service.core.signatures`,
`service.core.webhook_events`), so the verdict is exactly what `run` would do with the same delivery:
which configured scheme and header verify the signature (or which would), whether the body has the
fields the parser needs, and how far the timestamp is from this machine's clock. Header values are never
shown except a few harmless ones; a signature shows only its shape.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from service.core.signatures import (
    STANDARD_ID_HEADER,
    STANDARD_SIGNATURE_HEADER,
    STANDARD_TIMESTAMP_HEADER,
    WebhookVerifier,
    check_timestamp,
    parse_timestamp,
)
from service.core.webhook_events import MalformedEvent, parse_event
from service.errors import InvalidSignature
from service.settings import Settings

from .report import Check, failed, passed, skipped

# Shown as they arrived: they carry no credential and say how the sender talks.
SHOWN_HEADERS: Final = frozenset(
    {"content-type", "content-length", "user-agent", "accept", "accept-encoding", "connection", "host"}
)
# What the event parser needs, and why (the wording of the report).
NEEDED_FIELDS: Final = {
    "id": "the delivery's id",
    "sequence": "the inbox deduplicates on it",
    "event": "it says what to refresh",
    "timestamp": "the replay window is checked on it",
    "data.flowId": "it names the flow to refresh",
}
_HEX_DIGEST: Final = re.compile(r"(?:sha256=)?[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request that reached the preflight's listener."""

    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    received: float  # wall clock, Unix seconds

    def header(self, name: str) -> str | None:
        """A header by name, case-insensitively."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def shown_headers(delivery: Delivery) -> str:
    """Every header that arrived; values masked (their length kept) unless harmless."""
    parts = [
        f"{name}: {value[:80]}" if name.lower() in SHOWN_HEADERS else f"{name}: <masked, {len(value)} chars>"
        for name, value in delivery.headers
    ]
    return "; ".join(parts)


def signature_like(delivery: Delivery) -> list[str]:
    """The headers whose value or name looks like a signature, with the shape (never the value)."""
    found = []
    for name, value in delivery.headers:
        shape = _shape(value.strip())
        if shape is None and any(word in name.lower() for word in ("sig", "hmac")):
            shape = "named like a signature"
        if shape is not None:
            found.append(f"{name} ({shape})")
    return found


def _shape(value: str) -> str | None:
    if value.startswith("v1,"):
        return "Standard Webhooks v1 signature list"
    if _HEX_DIGEST.fullmatch(value):
        return "hex SHA-256 digest" + (" with sha256= prefix" if value.startswith("sha256=") else "")
    try:
        raw = base64.b64decode(value.removeprefix("sha256="), validate=True)
    except (binascii.Error, ValueError):
        return None
    return "base64 SHA-256 digest" if len(raw) == 32 else None


def _verifies(verifier: WebhookVerifier, delivery: Delivery) -> str | None:
    """None when `verifier` accepts the delivery's signature, else the reason label."""
    try:
        verifier.verify(dict(delivery.headers), delivery.body, delivery.received)
    except InvalidSignature as exc:
        return exc.reason
    return None


def _verifier(scheme: str, secrets: tuple[str, ...], header: str) -> WebhookVerifier:
    # Unbounded tolerance: the timestamp is judged on its own (check_timestamp_skew), not as a signature.
    return WebhookVerifier(scheme=scheme, secrets=secrets, signature_header=header, tolerance=math.inf)


def configured_label(settings: Settings) -> str:
    """How the settings expect webhooks to be signed, in words."""
    if settings.webhook_scheme == "standard":
        headers = (STANDARD_ID_HEADER, STANDARD_TIMESTAMP_HEADER, STANDARD_SIGNATURE_HEADER)
        return f"scheme standard ({', '.join(headers)})"
    return f"scheme wiseflow, header {settings.webhook_signature_header}"


def check_signature(delivery: Delivery, settings: Settings) -> Check:
    """Which configured scheme and header verify the signature, or which would, or what looks like one."""
    name = "webhook_signature"
    looks = ", ".join(signature_like(delivery)) or "none"
    secrets = tuple(s.reveal() for s in settings.webhook_secrets)
    if not secrets:
        return failed(
            name, f"WISEFLOW_WEBHOOK_SECRET is not set: run refuses every webhook; signature-like: {looks}"
        )
    try:
        configured = _verifier(settings.webhook_scheme, secrets, settings.webhook_signature_header)
    except ValueError:
        return failed(name, "WISEFLOW_WEBHOOK_SECRET is no usable key for the standard scheme (whsec_ base64)")
    reason = _verifies(configured, delivery)
    if reason is None:
        return passed(name, f"verified with {configured_label(settings)} and the configured secret")
    label = f"{configured_label(settings)} did not verify it ({reason})"
    for scheme, header, fix in _alternatives(delivery, settings):
        try:
            if _verifies(_verifier(scheme, secrets, header), delivery) is None:
                return failed(name, f"{label}; it verifies as scheme {scheme}, header {header}: set {fix}")
        except ValueError:
            continue  # a secret that is no standard key cannot verify that scheme
    return failed(
        name,
        f"{label}, nor under any other header or scheme with the configured secret(s); signature-like "
        f"headers: {looks}. Check WISEFLOW_WEBHOOK_SECRET, and what WISEflow signs (assumed: the raw body)",
    )


def _alternatives(delivery: Delivery, settings: Settings) -> Sequence[tuple[str, str, str]]:
    """(scheme, header, the settings to change) worth trying when the configured ones failed."""
    tries: list[tuple[str, str, str]] = []
    if settings.webhook_scheme != "standard" and delivery.header(STANDARD_SIGNATURE_HEADER) is not None:
        tries.append(("standard", STANDARD_SIGNATURE_HEADER, "WISEFLOW_WEBHOOK_SCHEME=standard"))
    configured = settings.webhook_signature_header.lower() if settings.webhook_scheme == "wiseflow" else None
    for header, _value in delivery.headers:
        if header.lower() == configured:
            continue
        scheme_fix = "" if settings.webhook_scheme == "wiseflow" else "WISEFLOW_WEBHOOK_SCHEME=wiseflow and "
        tries.append(("wiseflow", header, f"{scheme_fix}WISEFLOW_WEBHOOK_SIGNATURE_HEADER={header}"))
    return tries


def _fallbacks(delivery: Delivery, settings: Settings) -> tuple[str | None, int | None]:
    """Under Standard Webhooks the signed headers stand in for a body without id or timestamp."""
    if settings.webhook_scheme != "standard":
        return None, None
    raw_ts = delivery.header(STANDARD_TIMESTAMP_HEADER)
    try:
        timestamp = None if raw_ts is None else parse_timestamp(raw_ts)
    except InvalidSignature:
        timestamp = None
    return delivery.header(STANDARD_ID_HEADER), timestamp


def body_fields(doc: Any) -> list[str]:
    """The field names of a body (one level into `data`), never their values."""
    if not isinstance(doc, dict):
        return []
    names = [str(k) for k in doc if k != "data"]
    data = doc.get("data")
    if isinstance(data, dict):
        names += [f"data.{k}" for k in data]
    return names


def check_body(delivery: Delivery, settings: Settings) -> Check:
    """The body's fields against what the event parser needs."""
    name = "webhook_body"
    try:
        fields = body_fields(orjson.loads(delivery.body))
    except orjson.JSONDecodeError:
        return failed(name, "the body is not JSON: the service would answer 400 to every delivery")
    present = ", ".join(fields) or "none"
    missing = [f"{f} ({why})" for f, why in NEEDED_FIELDS.items() if f not in fields]
    fallback_id, fallback_ts = _fallbacks(delivery, settings)
    try:
        event = parse_event(delivery.body, fallback_id, fallback_ts)
    except MalformedEvent as exc:
        gaps = f"; missing: {', '.join(missing)}" if missing else ""
        return failed(
            name, f"the event parser refuses it ({exc.reason}): run would answer 400; fields: {present}{gaps}"
        )
    note = "" if event.known else f"; event {event.event} is not one the service acts on (it is only stored)"
    stand_ins = f"; taken from the signed headers: {', '.join(missing)}" if missing else ""
    return passed(name, f"the parser accepts it (event {event.event}); fields: {present}{stand_ins}{note}")


def check_timestamp_skew(delivery: Delivery, settings: Settings) -> Check:
    """How far the delivery's timestamp is from this machine's clock, against the replay window."""
    name = "webhook_timestamp"
    tolerance = settings.webhook_tolerance
    if settings.webhook_scheme == "standard":
        raw: object = delivery.header(STANDARD_TIMESTAMP_HEADER)
        where = f"header {STANDARD_TIMESTAMP_HEADER}"
    else:
        try:
            doc = orjson.loads(delivery.body)
        except orjson.JSONDecodeError:
            doc = None
        raw = doc.get("timestamp") if isinstance(doc, dict) else None
        where = "body timestamp"
    if raw is None:
        return failed(name, f"no {where}: the replay window cannot be checked, run would refuse the delivery")
    try:
        timestamp = parse_timestamp(raw)
    except InvalidSignature as exc:
        return failed(name, f"the {where} is not Unix seconds ({exc.reason}): run would refuse the delivery")
    skew = delivery.received - timestamp
    said = f"the {where} is {abs(skew):.0f} s {'behind' if skew >= 0 else 'ahead of'} this machine's clock"
    try:
        check_timestamp(timestamp, delivery.received, tolerance)
    except InvalidSignature:
        return failed(
            name,
            f"{said}, outside WISEFLOW_WEBHOOK_TOLERANCE={tolerance:g} s: run would refuse it (401). Check "
            "this machine's clock (NTP); if WISEflow's timestamp is not when it sent, raise the tolerance",
        )
    return passed(name, f"{said}, within WISEFLOW_WEBHOOK_TOLERANCE={tolerance:g} s")


def check_sequences(deliveries: Sequence[Delivery], settings: Settings) -> Check:
    """Whether the sequence numbers of two test events grow (the service does not rely on it: said so)."""
    name = "webhook_sequence"
    sequences = []
    for delivery in deliveries:
        try:
            sequences.append(parse_event(delivery.body, *_fallbacks(delivery, settings)).sequence)
        except MalformedEvent:
            continue
    if len(sequences) < 2:
        return skipped(
            name,
            f"not observable with {'one event' if sequences else 'no parsable event'}: growth needs two test "
            "events, and WISEflow delivered fewer",
        )
    shown = " then ".join(str(s) for s in sequences)
    grow = all(a < b for a, b in zip(sequences, sequences[1:], strict=False))
    verdict = "they grow" if grow else "they do not grow"
    return passed(
        name,
        f"sequences of {len(sequences)} test events: {shown}: {verdict}. Nothing relies on it: a redelivery is "
        "told by sequence, event, flow and participant within WISEflow's redelivery window, and a refresh "
        "answers the events received before it began",
    )
