"""The subscription plan of `webhooks ensure`: create, update, unchanged, duplicates."""

from __future__ import annotations

from service.core.subscriptions import plan_subscription

URL = "https://sync.example.org/webhooks/wiseflow"


def test_nothing_there_creates_with_the_secret() -> None:
    """No subscription yet: create one, active, with sorted events and our secret."""
    plan = plan_subscription([], url=URL, events=["FINAL_GRADE", "ASSESSMENT"], title="t", secret="s")
    assert (plan.action, plan.body) == (
        "create",
        {"title": "t", "url": URL, "active": True, "events": ["ASSESSMENT", "FINAL_GRADE"], "secret": "s"},
    )


def test_matching_subscription_is_left_alone() -> None:
    """Same URL, same events (any order), active: nothing to do."""
    existing = [{"id": 4, "url": URL, "active": True, "events": ["ASSESSMENT", "FINAL_GRADE"]}]
    plan = plan_subscription(existing, url=URL, events=["FINAL_GRADE", "ASSESSMENT"], title="t", secret=None)
    assert (plan.action, plan.webhook_id) == ("ok", 4)


def test_inactive_or_different_events_are_updated() -> None:
    """An inactive subscription, or one with other events, is updated in place."""
    for existing in (
        [{"id": 4, "url": URL, "active": False, "events": ["FINAL_GRADE"]}],
        [{"id": 4, "url": URL, "active": True, "events": ["ASSIGNMENT"]}],
    ):
        plan = plan_subscription(existing, url=URL, events=["FINAL_GRADE"], title="t", secret=None)
        assert (plan.action, plan.webhook_id, plan.body) == (
            "update",
            4,
            {"url": URL, "active": True, "events": ["FINAL_GRADE"]},
        )


def test_a_moved_url_updates_our_titled_subscription() -> None:
    """Our title under an old URL: update its URL instead of adding a second subscription."""
    existing = [
        {"id": 1, "url": "https://other/", "title": "x"},
        {"id": 2, "url": "https://old/", "title": "t"},
    ]
    plan = plan_subscription(existing, url=URL, events=["FINAL_GRADE"], title="t", secret=None)
    assert (plan.action, plan.webhook_id) == ("update", 2)


def test_duplicates_of_our_url_are_reported() -> None:
    """Further subscriptions of our URL are reported, not touched."""
    existing = [
        {"id": 1, "url": URL, "active": True, "events": ["FINAL_GRADE"]},
        {"id": 3, "url": URL, "active": True, "events": ["FINAL_GRADE"]},
    ]
    plan = plan_subscription(existing, url=URL, events=["FINAL_GRADE"], title="t", secret=None)
    assert (plan.action, plan.webhook_id, plan.duplicates) == ("ok", 1, (3,))


def test_unusable_entries_are_ignored() -> None:
    """Items that are not objects, or have no integer id, neither crash the plan nor become ours."""
    existing = [None, "x", {"url": URL, "events": []}, {"id": "7", "url": URL}, {"id": True, "url": URL}]
    plan = plan_subscription(existing, url=URL, events=["FINAL_GRADE"], title="t", secret=None)  # type: ignore[list-item]
    assert (plan.action, plan.webhook_id, plan.duplicates) == ("create", None, ())


def test_trailing_slash_and_repeated_events_are_still_unchanged() -> None:
    """A URL echoed back with a trailing slash and events listed twice need no update (idempotent)."""
    existing = [{"id": 4, "url": URL + "/", "active": True, "events": ["FINAL_GRADE", "FINAL_GRADE"]}]
    plan = plan_subscription(existing, url=URL, events=["FINAL_GRADE"], title="t", secret=None)
    assert (plan.action, plan.webhook_id) == ("ok", 4)


def test_rotation_replaces_ours_with_a_new_subscription_carrying_the_secret() -> None:
    """rotate: whatever matches, create ours anew with the secret, and name the one to delete after."""
    existing = [
        {"id": 4, "url": URL, "title": "t", "active": True, "events": ["FINAL_GRADE"]},
        {"id": 6, "url": URL, "active": True, "events": ["FINAL_GRADE"]},
    ]
    plan = plan_subscription(existing, url=URL, events=["FINAL_GRADE"], title="t", secret="new", rotate=True)
    assert (plan.action, plan.webhook_id, plan.duplicates) == ("rotate", 4, (6,))
    assert plan.body == {"title": "t", "url": URL, "active": True, "events": ["FINAL_GRADE"], "secret": "new"}


def test_rotation_without_a_subscription_is_a_plain_create() -> None:
    """Nothing to replace: rotating creates, as ensure always does."""
    plan = plan_subscription([], url=URL, events=["FINAL_GRADE"], title="t", secret="new", rotate=True)
    assert (plan.action, plan.webhook_id, plan.body["secret"]) == ("create", None, "new")
