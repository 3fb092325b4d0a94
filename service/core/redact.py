"""Redaction: what may never reach a log line, a span attribute or an error message."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK: Final = "***"
# Header and field names whose values are credentials or personal data (compared lower-case).
SENSITIVE_KEYS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "cookie",
        "set-cookie",
        "access_token",
        "refresh_token",
        "client_secret",
        "secret",
        "password",
        "token",
        "api_key",
        "x-wiseflow-signature",
        "webhook-signature",
        "email",
        "firstname",
        "lastname",
        "first_name",
        "last_name",
        "phone",
        "cpr",
        "ssn",
    }
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def is_sensitive(key: str) -> bool:
    """True when a header or field named `key` must be masked."""
    k = key.lower()
    return k in SENSITIVE_KEYS or k.endswith(("secret", "token", "password", "signature"))


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `data` with sensitive values masked, recursively."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if is_sensitive(str(key)):
            out[key] = MASK
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, list):
            out[key] = [redact_mapping(v) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


def redact_text(text: str) -> str:
    """Mask bearer and basic credentials inside free text."""
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def redact_url(url: str) -> str:
    """The URL without userinfo and with sensitive query values masked."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = urlencode(
        [(k, MASK if is_sensitive(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
