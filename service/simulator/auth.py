"""Credentials of the simulator: OAuth 2.0 client-credentials tokens with an expiry, and the static x-api-key.

A credential is identified for rate limiting and the journal by a label that is never a secret:
the OAuth client id, or ``api-key``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Final

from service.simulator.config import SimConfig
from service.simulator.http import ApiProblem

API_KEY_LABEL: Final = "api-key"
# Beyond this many live tokens, expired ones are swept before a new one is issued.
_SWEEP_ABOVE: Final = 1_000


def same(a: str, b: str) -> bool:
    """Constant-time string comparison, so timing reveals nothing about a secret."""
    return hmac.compare_digest(a.encode(), b.encode())


class TokenStore:
    """Bearer tokens issued by `POST /oauth2/token`, each with its client id and expiry (monotonic s)."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue(self, client_id: str, now: float, ttl: float) -> str:
        """A new opaque token for `client_id`, valid for `ttl` seconds from `now`."""
        if len(self._tokens) > _SWEEP_ABOVE:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (client_id, now + ttl)
        return token

    def client_of(self, token: str, now: float) -> str | None:
        """The client id a live token belongs to; None when unknown or expired."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._tokens[token]
            return None
        return entry[0]


def check_client(config: SimConfig, client_id: str, client_secret: str) -> bool:
    """True when the pair is the simulator's configured client credentials."""
    return same(client_id, config.client_id) & same(client_secret, config.client_secret)


def identify(headers: Mapping[str, str], config: SimConfig, tokens: TokenStore, now: float) -> str:
    """The credential label of a request, or `ApiProblem(401)` for missing, wrong or expired credentials."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiProblem(401, "the Authorization header must be 'Bearer <token>'", "unauthorized")
        client = tokens.client_of(token.strip(), now)
        if client is None:
            raise ApiProblem(401, "the bearer token is invalid or has expired", "invalid_token")
        return client
    api_key = headers.get("x-api-key")
    if api_key is not None:
        if not same(api_key, config.api_key):
            raise ApiProblem(401, "the API key is not valid", "invalid_api_key")
        return API_KEY_LABEL
    raise ApiProblem(401, "authentication required: a bearer token or an x-api-key header", "unauthorized")
