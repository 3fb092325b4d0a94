"""The preflight from start to end: every check in order, against the configured WISEflow, read-only.

1. credentials, token lifetime, `X-Client-Name`, X-Trace-Id (`access`); 2. rate-limit headers against the
budgets (`ratelimits`); 3. every read endpoint's shape (`endpoints`); 4. webhooks observed for real with a
public URL (`webhooks`); then what no preflight can provoke (redelivery, maintenance), as skipped checks.
Nothing is written to the service's database; the only write to WISEflow is the temporary subscription.
Its client is every command's (`service.clients`), read-only: an existing SYNC_DATABASE's saved pause is
waited out first (up to SYNC_MAX_WAIT, else `WiseflowPaused`, exit 75, before any request), never written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from service.clients import command_client
from service.core.clock import Clock, SystemClock
from service.core.redact import redact_url
from service.settings import Settings

from . import ratelimits
from .access import check_access
from .endpoints import check_reads
from .report import Check, Report, skipped
from .webhooks import DELIVERY_WAIT, WEBHOOK_CHECKS, WRITE_ENDPOINTS, observe, without_public_url

READ_ENDPOINTS: Final = (
    "POST /oauth2/token", "GET /license/info", "POST /flows/search", "POST /participation-events",
    "GET /webhooks", "GET /flow/{flowId}", "GET /flows/{flowId}/participants", "GET /flow/{flowId}/assessments",
)  # fmt: skip


async def run_preflight(
    settings: Settings,
    public_url: str | None = None,
    *,
    clock: Clock | None = None,
    delivery_wait: float = DELIVERY_WAIT,
) -> Report:
    """Every check against `settings.api_url`; `public_url` enables the webhook checks."""
    clock = clock or SystemClock()
    async with command_client(settings, "preflight", read_only=True, clock=clock) as client:
        access = await check_access(client, settings)
        checks = list(access.checks)
        if access.reply is None:
            checks += _not_asked()
        else:
            headers = access.reply.headers
            checks.append(ratelimits.check_headers(headers, clock.wall()))
            checks.append(ratelimits.check_budgets(headers, settings))
            checks += await check_reads(client, clock.wall())
            if public_url is None:
                checks += without_public_url()
            else:
                checks += await observe(client, settings, public_url, clock.wall, delivery_wait)
    checks += _not_provokable()
    generated = datetime.fromtimestamp(clock.wall(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Report(redact_url(settings.api_url), settings.client_name, generated, tuple(checks))


def _not_asked() -> list[Check]:
    """Every later check, skipped because the credentials did not work."""
    why = "not asked: the credentials were not accepted"
    names = [
        "token_lifetime",
        "x_trace_id",
        "rate_limit_headers",
        "rate_budgets",
        *(f"endpoint {e}" for e in READ_ENDPOINTS),
        *(f"endpoint {m} {p}" for m, p in WRITE_ENDPOINTS),
        *WEBHOOK_CHECKS,
    ]
    return [skipped(name, why) for name in names]


def _not_provokable() -> list[Check]:
    """The assumptions a preflight cannot observe on demand, said as such."""
    return [
        skipped(
            "webhook_redelivery",
            "not provoked: WISEflow redelivers a failed delivery 8 times, 15 min apart; whether a redelivery "
            "keeps its first timestamp is not published. If it does, a redelivery older than "
            "WISEFLOW_WEBHOOK_TOLERANCE is refused and polling catches the change up (docs/wiseflow.md)",
        ),
        skipped(
            "maintenance",
            "not provoked: assumed to answer 503 with Retry-After or to refuse connections; both open the "
            "circuit breaker (docs/wiseflow.md). Subscribe to WISEflow's status page for the windows",
        ),
    ]
