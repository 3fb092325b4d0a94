"""Step 1: credentials accepted, the token's lifetime as WISEflow states it, `X-Client-Name`, X-Trace-Id.

The first request is `GET /license/info` (cheap, authenticated, read-only): with OAuth it makes the client
ask `POST /oauth2/token` first, so one call answers "is a token issued" and "is it accepted".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from service.adapters.wiseflow import Reply, WiseflowClient
from service.adapters.wiseflow.auth import DEFAULT_EXPIRES_IN, TOKEN_PATH, OAuthTokens
from service.core.retry_after import parse_delta_seconds
from service.errors import ApiError, AuthError, ServiceError
from service.settings import Settings

from .endpoints import endpoint_check, token_check
from .report import Check, failed, passed, skipped

DEFAULT_CLIENT_NAME: Final = "wiseflow-sync"
# The short reason WISEflow gave, as the client's AuthError quotes it: "(invalid_client)".
_CODE: Final = re.compile(r"\(([A-Za-z0-9_.-]{1,64})\)")


@dataclass(slots=True)
class Access:
    """The checks of step 1, and the `/license/info` answer (None when the credentials did not work)."""

    checks: list[Check] = field(default_factory=list)
    reply: Reply | None = None


async def check_access(client: WiseflowClient, settings: Settings) -> Access:
    """Ask `GET /license/info` and judge the credentials, the token and the answer by it."""
    try:
        reply = await client.request("GET", "/license/info")
    except AuthError as exc:
        return Access([failed("credentials", _refused(exc, settings))])
    except ServiceError as exc:
        return Access([failed("credentials", f"the credentials could not be confirmed: {exc}")])
    answer = client.credentials.last_answer if isinstance(client.credentials, OAuthTokens) else None
    checks = [
        passed("credentials", _accepted(settings, reply)),
        _token_lifetime(settings, answer),
        token_check(answer) if settings.uses_oauth else skipped(
            "endpoint POST /oauth2/token", "WISEFLOW_API_KEY in use: no token is asked for"
        ),
        endpoint_check("GET", "/license/info", "license-info", reply),
        _trace_id(reply),
    ]  # fmt: skip
    return Access(checks, reply)


def _accepted(settings: Settings, reply: Reply) -> str:
    how = (
        "OAuth 2.0 client credentials: POST /oauth2/token issued a token"
        if settings.uses_oauth
        else "the static x-api-key (UNIwise recommends OAuth 2.0 client credentials for production)"
    )
    name = f"X-Client-Name `{settings.client_name}` sent on every request"
    if settings.client_name == DEFAULT_CLIENT_NAME:
        name += " (the default: set WISEFLOW_CLIENT_NAME to name your integration)"
    return f"{how}; GET /license/info answered {reply.status} with it; {name}"


def _refused(exc: ApiError, settings: Settings) -> str:
    code = _CODE.search(exc.message)
    said = f"{exc.method} {exc.path} answered {exc.status}" + (f" ({code.group(1)})" if code else "")
    said += f", X-Trace-Id {exc.trace_id}" if exc.trace_id else ""
    if exc.path == TOKEN_PATH:
        return f"{said}: WISEflow refused WISEFLOW_CLIENT_ID / WISEFLOW_CLIENT_SECRET"
    what = "the issued token" if settings.uses_oauth else "WISEFLOW_API_KEY"
    return f"{said}: WISEflow refused {what} (API access is a licence add-on; check it is enabled)"


def _token_lifetime(settings: Settings, answer: dict[str, Any] | None) -> Check:
    """`expires_in` as WISEflow states it, and what the service does with it."""
    name = "token_lifetime"
    if not settings.uses_oauth:
        return skipped(name, "WISEFLOW_API_KEY in use: a static key has no lifetime to renew")
    stated = answer.get("expires_in") if answer is not None else None
    lifetime = parse_delta_seconds(stated) if isinstance(stated, str) else stated
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        return failed(
            name,
            f"the token answer states no usable expires_in: the service assumes {DEFAULT_EXPIRES_IN:g} s "
            "and renews after the first 401",
        )
    renew = lifetime - min(60.0, 0.1 * lifetime)
    documented = "as documented" if lifetime == DEFAULT_EXPIRES_IN else f"documented: {DEFAULT_EXPIRES_IN:g} s"
    refresh = (
        "WISEflow also issued a refresh token, which the service does not use (a new grant is one request too)"
        if answer is not None and "refresh_token" in answer
        else "no refresh token (as documented)"
    )
    return passed(
        name,
        f"expires_in {lifetime:g} s ({documented}); {refresh}: the service asks for a new token after "
        f"{renew:g} s, and once more after a 401",
    )


def _trace_id(reply: Reply) -> Check:
    if reply.trace_id:
        return passed("x_trace_id", f"answers carry X-Trace-Id (e.g. {reply.trace_id}), logged per request")
    return failed("x_trace_id", "GET /license/info carried no X-Trace-Id: logs cannot name WISEflow's requests")
