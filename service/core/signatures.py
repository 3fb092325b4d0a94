"""Webhook signatures: signing (for the simulator and tests) and strict verification (for the receiver).

Two schemes, chosen by `WISEFLOW_WEBHOOK_SCHEME`:

- ``wiseflow`` (docs/wiseflow.md, ASSUMED): header ``X-Wiseflow-Signature`` (name is a setting) carries
  ``base64(HMAC-SHA256(key=utf8(secret), msg=raw body))``; the replay window is checked on the body's
  ``timestamp`` (the caller passes it to `check_timestamp` once the body is parsed).
- ``standard`` (Standard Webhooks): headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
  (one or more space-separated ``v1,<base64>``) over ``f"{id}.{timestamp}." + body``; the key is the
  base64-decoded part after ``whsec_`` when the secret has that prefix, else its UTF-8 bytes.

Several secrets may be configured at once so a secret can be rotated without losing events. Signatures are
compared as raw digests with `hmac.compare_digest`. Every failure raises `InvalidSignature(reason)` with a
short label that is safe to log and to count; nothing here ever logs or echoes a secret or a signature.
Pure: the current time is a parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from service.errors import InvalidSignature

SCHEMES: Final = ("wiseflow", "standard")
STANDARD_ID_HEADER: Final = "webhook-id"
STANDARD_TIMESTAMP_HEADER: Final = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER: Final = "webhook-signature"
_WHSEC_PREFIX: Final = "whsec_"
# The shortest HMAC key accepted, in bytes after decoding: 128 bits. Anyone who captures one signed delivery
# can guess keys offline at billions a second, so a short key ("secret", an empty `whsec_`) is a forged
# webhook waiting to happen; Standard Webhooks' own keys are 24 to 64 random bytes, so real ones pass.
MIN_KEY_BYTES: Final = 16
_DIGEST_SIZE: Final = hashlib.sha256().digest_size
# A base64 SHA-256 digest is 44 characters; anything far longer is not a signature and not worth decoding.
_MAX_SIGNATURE_CHARS: Final = 64
# Standard Webhooks allows several signatures (rotation on the sender side), in any order and mixed with
# other versions: every v1 entry is a candidate, so a valid one is never skipped for its position. The work
# stays bounded by the header's size (aiohttp refuses header lines over 8190 bytes before we see them) and
# each key's digest is computed once, whatever the number of candidates.
_MAX_HEADER_CHARS: Final = 8192
# Unix seconds, ASCII digits only: no sign, no spaces, no fraction, no exponent, no Unicode digits.
# 12 digits reach the year 33658, so anything longer is garbage rather than a time.
_TIMESTAMP_RE: Final = re.compile(r"[0-9]{1,12}", re.ASCII)
_MAX_TIMESTAMP: Final = 10**12 - 1
_MSG_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,256}", re.ASCII)

# Reasons, as counted in metrics and written in logs.
MISSING_SIGNATURE: Final = "missing_signature"
BAD_SIGNATURE: Final = "bad_signature"
MISSING_TIMESTAMP: Final = "missing_timestamp"
BAD_TIMESTAMP: Final = "bad_timestamp"
STALE_TIMESTAMP: Final = "stale_timestamp"
MISSING_ID: Final = "missing_id"
BAD_ID: Final = "bad_id"
NO_SECRET: Final = "no_secret_configured"  # noqa: S105 - a reason label, not a secret


def wiseflow_key(secret: str) -> bytes:
    """The HMAC key of the default scheme: the secret's UTF-8 bytes."""
    return secret.encode("utf-8")


def standard_key(secret: str) -> bytes:
    """The HMAC key of Standard Webhooks: base64 after ``whsec_``, else the secret's UTF-8 bytes."""
    if secret.startswith(_WHSEC_PREFIX):
        try:
            return base64.b64decode(secret[len(_WHSEC_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be base64 after its prefix") from None
    return secret.encode("utf-8")


def key_problem(scheme: str, secret: str) -> str | None:
    """Why `secret` is no usable HMAC key under `scheme` (never echoing it), or None when it is one."""
    try:
        key = standard_key(secret) if scheme == "standard" else wiseflow_key(secret)
    except ValueError as exc:
        return f"malformed: {exc}"
    if not key:
        return "malformed: an empty key (nothing after whsec_)"
    if len(key) < MIN_KEY_BYTES:
        return f"too short: each secret must be at least {MIN_KEY_BYTES} bytes (after decoding a whsec_ key)"
    return None


def sign_wiseflow(secret: str, body: bytes) -> str:
    """``base64(HMAC-SHA256(utf8(secret), body))``: the default scheme's signature header value."""
    return base64.b64encode(hmac.digest(wiseflow_key(secret), body, "sha256")).decode("ascii")


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>``: the Standard Webhooks signature of one message."""
    digest = hmac.digest(standard_key(secret), _standard_content(msg_id, timestamp, body), "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")


def _standard_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def parse_timestamp(raw: object) -> int:
    """A Unix-seconds timestamp, strictly: a JSON integer or a string of ASCII digits, bounded.

    Floats, booleans, signs, whitespace, exponents, Unicode digits and huge values are `bad_timestamp`.
    """
    if isinstance(raw, bool):
        raise InvalidSignature(BAD_TIMESTAMP)
    if isinstance(raw, int):
        if 0 <= raw <= _MAX_TIMESTAMP:
            return raw
        raise InvalidSignature(BAD_TIMESTAMP)
    if isinstance(raw, str) and _TIMESTAMP_RE.fullmatch(raw):
        return int(raw)
    raise InvalidSignature(BAD_TIMESTAMP)


def check_timestamp(timestamp: int, now: float, tolerance: float) -> None:
    """Raise `stale_timestamp` unless `timestamp` is within `tolerance` seconds of `now`, either way."""
    # Both directions: a far-future timestamp would let a captured message be replayed later.
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(STALE_TIMESTAMP)


def _decode_signature(value: str) -> bytes | None:
    """The raw digest of one base64 signature, or None when it cannot be one."""
    if not value or len(value) > _MAX_SIGNATURE_CHARS:
        return None
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    return raw if len(raw) == _DIGEST_SIZE else None


def _any_match(keys: Sequence[bytes], message: bytes, candidates: Sequence[bytes]) -> bool:
    """True when any key's digest of `message` equals any candidate, compared in constant time."""
    matched = False
    for key in keys:
        expected = hmac.digest(key, message, "sha256")
        for candidate in candidates:
            # No early exit on a match: every comparison runs, so timing says nothing about which key.
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively even when `headers` is a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class Verified:
    """What verification established: the signed timestamp (standard scheme) and message id, if any."""

    timestamp: int | None
    message_id: str | None


@dataclass(frozen=True, slots=True)
class WebhookVerifier:
    """Verifies webhook requests with every configured secret (rotation) for one scheme."""

    scheme: str
    secrets: tuple[str, ...]
    signature_header: str = "X-Wiseflow-Signature"
    tolerance: float = 300.0
    _keys: tuple[bytes, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown webhook scheme {self.scheme!r}")
        derive = wiseflow_key if self.scheme == "wiseflow" else standard_key
        keys = tuple(derive(s) for s in self.secrets)
        if any(not key for key in keys):
            # An empty key is public: anyone could sign with it. Settings refuse it; this is the last guard.
            raise ValueError("an empty key verifies nothing (nothing after whsec_?)")
        object.__setattr__(self, "_keys", keys)

    def __repr__(self) -> str:
        # Never the secrets themselves: only how many are configured.
        return f"WebhookVerifier({self.scheme!r}, secrets={len(self.secrets)}, tolerance={self.tolerance})"

    @property
    def timestamp_in_body(self) -> bool:
        """True when the replay window is checked on the body's `timestamp` (the default scheme)."""
        return self.scheme == "wiseflow"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        """Check the signature (and, for Standard Webhooks, the header timestamp) of one request.

        For the default scheme the caller must still call `check_body_timestamp` once the body is parsed.
        """
        if not self._keys:
            raise InvalidSignature(NO_SECRET)
        if self.scheme == "wiseflow":
            self._verify_wiseflow(headers, body)
            return Verified(timestamp=None, message_id=None)
        return self._verify_standard(headers, body, now)

    def check_body_timestamp(self, raw: object, now: float) -> int:
        """Parse and check the body's `timestamp` against the replay window; return it.

        An integer however far off (negative, huge) is a time outside the window: `stale_timestamp`.
        """
        timestamp = raw if isinstance(raw, int) and not isinstance(raw, bool) else parse_timestamp(raw)
        check_timestamp(timestamp, now, self.tolerance)
        return timestamp

    def _verify_wiseflow(self, headers: Mapping[str, str], body: bytes) -> None:
        value = _header(headers, self.signature_header)
        if value is None or value.strip() == "":
            raise InvalidSignature(MISSING_SIGNATURE)
        candidate = _decode_signature(value.strip())
        if candidate is None or not _any_match(self._keys, body, [candidate]):
            raise InvalidSignature(BAD_SIGNATURE)

    def _verify_standard(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        msg_id = _header(headers, STANDARD_ID_HEADER)
        raw_ts = _header(headers, STANDARD_TIMESTAMP_HEADER)
        value = _header(headers, STANDARD_SIGNATURE_HEADER)
        if value is None or value.strip() == "":
            raise InvalidSignature(MISSING_SIGNATURE)
        if msg_id is None or msg_id == "":
            raise InvalidSignature(MISSING_ID)
        if not _MSG_ID_RE.fullmatch(msg_id):
            raise InvalidSignature(BAD_ID)
        if raw_ts is None:
            raise InvalidSignature(MISSING_TIMESTAMP)
        timestamp = parse_timestamp(raw_ts)
        check_timestamp(timestamp, now, self.tolerance)
        candidates = _standard_candidates(value)
        if not candidates or not _any_match(self._keys, _standard_content(msg_id, timestamp, body), candidates):
            raise InvalidSignature(BAD_SIGNATURE)
        return Verified(timestamp=timestamp, message_id=msg_id)


def _standard_candidates(value: str) -> list[bytes]:
    """The decoded ``v1`` signatures of a ``webhook-signature`` header; other versions are ignored."""
    if len(value) > _MAX_HEADER_CHARS:
        return []
    candidates: list[bytes] = []
    for entry in value.split():
        version, sep, sig = entry.partition(",")
        if sep and version == "v1":
            decoded = _decode_signature(sig)
            if decoded is not None:
                candidates.append(decoded)
    return candidates
