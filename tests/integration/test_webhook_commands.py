"""`inbox dead-letters`, `inbox replay` and `webhooks ensure` against real SQLite and the simulator."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from service.adapters.store import Store
from service.adapters.store.connection import fetch_text
from service.adapters.store.inbox import Inbox
from service.adapters.store.unit import SqliteUnitOfWork
from service.adapters.webhook_http import verifier_from_settings
from service.cli import main
from service.commands.webhooks import ensure
from service.core.ports import WEBHOOK_EVENTS
from service.core.webhook_events import WebhookEvent
from service.errors import ConfigError
from service.settings import load_settings
from service.simulator.webhooks import sign_headers
from tests.conftest import SimHandle

NOW = 1_700_000_000.0


async def _database_with_dead_letter(path: Path) -> None:
    store = await Store.open(path)
    try:
        inbox = Inbox(store)
        await inbox.record(WebhookEvent("d1", 11, "FINAL_GRADE", int(NOW), 5, 1), b"{}", "pending", NOW)
        await inbox.record(WebhookEvent("d2", 12, "FINAL_GRADE", int(NOW), 5, 1), b"{}", "pending", NOW)
        async with SqliteUnitOfWork(store).transaction() as unit:
            # Ids 1 and 2 (arrival order): the dead letter's ID is its id, not its sequence (11).
            await unit.inbox.mark_failed([1], "ApiUnavailable: down", NOW, max_attempts=1)
    finally:
        await store.close()


async def _status(path: Path, sequence: int) -> str | None:
    store = await Store.open(path)
    try:
        return await fetch_text(store.db, "SELECT status FROM inbox WHERE sequence = ?", (sequence,))
    finally:
        await store.close()


async def test_dead_letters_lists_failed_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The dead event is listed with its error; the pending one is not."""
    db = tmp_path / "db.sqlite3"
    await _database_with_dead_letter(db)
    # The CLI runs its own event loop: call it from a worker thread of this test's loop.
    code = await _cli(["inbox", "dead-letters"], db)
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[1].startswith("1 ")
    assert "ApiUnavailable: down" in out
    assert "\n2 " not in out


async def test_replay_is_safe_to_repeat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Replaying an event re-queues it once; again says there is nothing to replay; unknown IDs exit 1."""
    db = tmp_path / "db.sqlite3"
    await _database_with_dead_letter(db)
    assert await _cli(["inbox", "replay", "1"], db) == 0
    assert await _status(db, 11) == "pending"
    assert await _cli(["inbox", "replay", "1"], db) == 0
    assert await _cli(["inbox", "replay", "--all"], db) == 0
    assert await _cli(["inbox", "replay", "999"], db) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "re-queued 1 event(s); the service's inbox worker will process them",
        "event 1 is pending: nothing to replay",
        "no dead letters to replay",
    ]


async def test_replay_takes_the_sequence_an_older_listing_showed(tmp_path: Path) -> None:
    """An ID that is no event's id but a dead event's sequence (what listings showed before) replays it."""
    db = tmp_path / "db.sqlite3"
    await _database_with_dead_letter(db)
    assert await _cli(["inbox", "replay", "11"], db) == 0
    assert await _status(db, 11) == "pending"
    assert await _status(db, 12) == "pending"  # a sequence not dead is left as it is
    assert await _cli(["inbox", "replay", "12"], db) == 0
    assert await _cli(["inbox", "replay", "13"], db) == 1  # neither an id nor a sequence


async def test_commands_refuse_a_missing_database(tmp_path: Path) -> None:
    """Without a database file the command exits 2 naming SYNC_DATABASE (it never creates one)."""
    assert await _cli(["inbox", "dead-letters"], tmp_path / "absent.sqlite3") == 2
    assert not (tmp_path / "absent.sqlite3").exists()


async def _cli(argv: list[str], db: Path) -> int:
    return await asyncio.to_thread(main, argv, {"SYNC_DATABASE": str(db)})


async def test_ensure_creates_then_reports_then_updates(simulator: SimHandle) -> None:
    """First run creates the subscription (with our first secret), second changes nothing, new events update."""
    settings = load_settings(
        {
            "WISEFLOW_API_URL": simulator.api_url,
            "WISEFLOW_API_KEY": "demo-api-key",
            "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-1-0123,webhook-secret-0-0123",
        }
    )
    url = "http://127.0.0.1:9/webhooks/wiseflow"
    lines = []
    for events in (list(WEBHOOK_EVENTS), list(WEBHOOK_EVENTS), ["FINAL_GRADE"]):
        out = io.StringIO()
        assert await ensure(settings, url, events, dry_run=False, out=out) == 0
        lines.append(out.getvalue().split(":")[0])
    assert lines == [
        "webhook subscription created",
        "webhook subscription unchanged",
        "webhook subscription updated",
    ]
    subs = list(simulator.state.subscriptions.values())
    assert [(s.url, s.events, s.active, s.secret) for s in subs] == [
        (url, ["FINAL_GRADE"], True, "webhook-secret-1-0123")
    ]


async def test_ensure_dry_run_sends_no_write(simulator: SimHandle) -> None:
    """--dry-run says what it would do and creates nothing."""
    settings = load_settings(
        {
            "WISEFLOW_API_URL": simulator.api_url,
            "WISEFLOW_API_KEY": "demo-api-key",
            "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789",
        }
    )
    out = io.StringIO()
    assert (
        await ensure(
            settings, "https://sync.example.org/webhooks/wiseflow", ["FINAL_GRADE"], dry_run=True, out=out
        )
        == 0
    )
    assert out.getvalue().startswith("webhook subscription would be created: id=new")
    assert simulator.state.subscriptions == {}


async def test_ensure_reports_an_api_error(simulator: SimHandle, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused credentials end the command with exit 1 and one line on stderr."""
    settings = load_settings(
        {
            "WISEFLOW_API_URL": simulator.api_url,
            "WISEFLOW_API_KEY": "wrong",
            "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789",
        }
    )
    assert (
        await ensure(settings, "https://x.example.org/h", ["FINAL_GRADE"], dry_run=False, out=io.StringIO())
        == 1
    )
    err = capsys.readouterr().err
    assert any(line.startswith("wiseflow-sync webhooks ensure: ") for line in err.splitlines())
    assert "wrong" not in err


@pytest.mark.parametrize(
    "raw", ["ftp://x.example.org/h", "http://sync.example.org/h", "https://u:p@sync.example.org/h"]
)
def test_webhook_url_must_be_https_or_loopback(raw: str) -> None:
    """Non-http(s), plain http off loopback, or credentialed URLs are configuration errors."""
    with pytest.raises(ConfigError, match="SYNC_PUBLIC_WEBHOOK_URL"):
        load_settings({"SYNC_PUBLIC_WEBHOOK_URL": raw})
    assert load_settings(
        {"SYNC_PUBLIC_WEBHOOK_URL": "http://127.0.0.1:8080/webhooks/wiseflow"}
    ).public_webhook_url


def test_webhook_events_default_to_all_and_are_checked() -> None:
    """No list means every event; an unknown event is a configuration error."""
    assert load_settings({}).webhook_events == WEBHOOK_EVENTS
    chosen = load_settings({"SYNC_WEBHOOK_EVENTS": "final_grade, ASSESSMENT"}).webhook_events
    assert chosen == ("FINAL_GRADE", "ASSESSMENT")
    with pytest.raises(ConfigError, match="SYNC_WEBHOOK_EVENTS"):
        load_settings({"SYNC_WEBHOOK_EVENTS": "FINAL_GRADE,NOPE"})


def test_ensure_without_a_url_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """No --url and no SYNC_PUBLIC_WEBHOOK_URL: exit 2 with one line naming the variable."""
    env = {"WISEFLOW_API_KEY": "k", "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789"}
    assert main(["webhooks", "ensure"], env) == 2
    assert "SYNC_PUBLIC_WEBHOOK_URL" in capsys.readouterr().err


async def test_ensure_through_the_cli(simulator: SimHandle, capsys: pytest.CaptureFixture[str]) -> None:
    """`wiseflow-sync webhooks ensure` reads SYNC_PUBLIC_WEBHOOK_URL and is idempotent across runs."""
    env = {
        "WISEFLOW_API_URL": simulator.api_url,
        "WISEFLOW_API_KEY": "demo-api-key",
        "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789",
        "SYNC_PUBLIC_WEBHOOK_URL": "https://sync.example.org/webhooks/wiseflow",
        "LOG_LEVEL": "ERROR",
    }
    for _ in range(2):
        assert await asyncio.to_thread(main, ["webhooks", "ensure"], env) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "webhook subscription created",
        "webhook subscription unchanged",
    ]
    assert len(simulator.state.subscriptions) == 1


NEW_SECRET, OLD_SECRET = "new-webhook-secret-2026", "old-webhook-secret-2025"


def _rotation_env(simulator: SimHandle, secrets: str) -> dict[str, str]:
    """`webhooks ensure` against the simulator with the given WISEFLOW_WEBHOOK_SECRET."""
    return {
        "WISEFLOW_API_URL": simulator.api_url,
        "WISEFLOW_API_KEY": "demo-api-key",
        "WISEFLOW_WEBHOOK_SECRET": secrets,
        "SYNC_PUBLIC_WEBHOOK_URL": "https://sync.example.org/webhooks/wiseflow",
        "SYNC_WEBHOOK_EVENTS": "FINAL_GRADE",
        "LOG_LEVEL": "ERROR",
    }


async def test_rotate_secret_replaces_the_subscription_with_one_signed_by_the_new_secret(
    simulator: SimHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--rotate-secret` with "new,old": a new subscription carries the new secret, then the old one goes;
    what WISEflow then signs verifies with the service's "new,old" verifier. A dry run changes nothing."""
    assert await asyncio.to_thread(main, ["webhooks", "ensure"], _rotation_env(simulator, OLD_SECRET)) == 0
    (old_id,) = simulator.state.subscriptions
    rotating = _rotation_env(simulator, f"{NEW_SECRET},{OLD_SECRET}")
    assert await asyncio.to_thread(main, ["webhooks", "ensure", "--rotate-secret", "--dry-run"], rotating) == 0
    assert [s.secret for s in simulator.state.subscriptions.values()] == [OLD_SECRET]
    assert await asyncio.to_thread(main, ["webhooks", "ensure", "--rotate-secret"], rotating) == 0
    ((new_id, sub),) = simulator.state.subscriptions.items()
    assert (new_id != old_id, sub.secret, sub.url, sub.events) == (
        True,
        NEW_SECRET,
        "https://sync.example.org/webhooks/wiseflow",
        ["FINAL_GRADE"],
    )
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("webhook subscription would be replaced: id=new ")
    assert out[1].endswith(f"(new secret; subscription {old_id} would be deleted)")
    assert out[2].startswith(f"webhook subscription replaced: id={new_id} ")
    assert out[2].endswith(f"(new secret; subscription {old_id} deleted)")
    assert NEW_SECRET not in "\n".join(out)
    target = simulator.state.subscription_target(sub)
    body = b'{"id":"d-1","sequence":1,"event":"FINAL_GRADE","timestamp":1700000000,"data":{"flowId":1}}'
    headers = sign_headers(target, "d-1", 1_700_000_000, body)
    verifier = verifier_from_settings(load_settings(rotating))
    verifier.verify(headers, body, 1_700_000_000)


def test_rotate_secret_needs_the_old_secret_beside_the_new(capsys: pytest.CaptureFixture[str]) -> None:
    """One secret only: exit 2 naming WISEFLOW_WEBHOOK_SECRET, nothing sent (the old deliveries would fail)."""
    env = {
        "WISEFLOW_API_KEY": "k",
        "WISEFLOW_WEBHOOK_SECRET": NEW_SECRET,
        "SYNC_PUBLIC_WEBHOOK_URL": "https://sync.example.org/webhooks/wiseflow",
    }
    assert main(["webhooks", "ensure", "--rotate-secret"], env) == 2
    err = capsys.readouterr().err
    assert "WISEFLOW_WEBHOOK_SECRET" in err
    assert "new,old" in err
    assert NEW_SECRET not in err
