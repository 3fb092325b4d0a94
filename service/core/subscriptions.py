"""What `webhooks ensure` must do to make WISEflow's subscriptions match ours: a pure decision.

Which existing subscription is ours: first one with our URL; else one with our title (the URL moved, so
update it rather than add a second subscription); else none, and one is created. Ours is updated when
its events differ or it is inactive; otherwise nothing is sent. Other subscriptions with our URL are
reported as duplicates (each would deliver every event twice), never deleted behind the operator's back.

Rotating the secret (`rotate`): WISEflow never shows a subscription's secret and its update request has
no `secret` field (OpenAPI 1.34.0, `update-webhook-api-request`), so the only way to give WISEflow a new
secret is a new subscription. The plan is then `rotate`: create ours anew (URL, events, title, the new
secret), and only after that delete the old one, so that no event goes undelivered in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.core.ports import Json


@dataclass(frozen=True, slots=True)
class SubscriptionPlan:
    """The action (`create`, `update`, `rotate` or `ok`), the subscription it concerns, the request body.

    For `rotate`, `webhook_id` is the subscription to delete once its replacement (`body`) is created.
    """

    action: str
    webhook_id: int | None
    body: Json
    duplicates: tuple[int, ...] = field(default=())


def plan_subscription(
    existing: Sequence[Json],
    *,
    url: str,
    events: Sequence[str],
    title: str,
    secret: str | None,
    rotate: bool = False,
) -> SubscriptionPlan:
    """How to bring `existing` (`GET /webhooks` data) to one active subscription of `url` for `events`.

    `rotate`: replace ours by a new subscription carrying `secret`, whatever else matches.
    """
    wanted = sorted(dict.fromkeys(events))
    # Only entries we could address (an object with an integer id) are candidates: an API answer with a
    # stray item must not crash the command nor make it update a subscription it cannot name.
    usable = [w for w in existing if isinstance(w, dict) and _id_of(w) is not None]
    same_url = [w for w in usable if _same_url(w.get("url"), url)]
    ours = same_url[0] if same_url else next((w for w in usable if w.get("title") == title), None)
    duplicates = tuple(int(w["id"]) for w in same_url[1:])
    body: Json = {"title": title, "url": url, "active": True, "events": wanted}
    if secret is not None:
        body["secret"] = secret
    if ours is None:
        return SubscriptionPlan("create", None, body, duplicates)
    webhook_id = int(ours["id"])
    if rotate:
        return SubscriptionPlan("rotate", webhook_id, body, duplicates)
    events_now = ours.get("events")
    current = sorted({e for e in events_now if isinstance(e, str)}) if isinstance(events_now, list) else []
    if _same_url(ours.get("url"), url) and current == wanted and ours.get("active") is True:
        return SubscriptionPlan("ok", webhook_id, {}, duplicates)
    return SubscriptionPlan("update", webhook_id, {"url": url, "active": True, "events": wanted}, duplicates)


def _id_of(webhook: Json) -> int | None:
    value = webhook.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _same_url(theirs: object, ours: str) -> bool:
    """The same endpoint, whatever a trailing slash WISEflow may add (else every run would update)."""
    return isinstance(theirs, str) and theirs.rstrip("/") == ours.rstrip("/")
