"""Simulator webhooks on loopback: signed, duplicated, redelivered, dropped, reordered, and subscriptions."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import SimFactory, SimHandle
from tests.waiting import wait_until

SECRET = "demo-webhook-secret"
WAIT_S = 30.0  # a deadline for a state that normally arrives in milliseconds


@dataclass
class Receiver:
    """A webhook endpoint that records every call and answers from a script (then 200)."""

    script: list[int] = field(default_factory=list)
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        self._arrived.set()
        return web.Response(status=self.script.pop(0) if self.script else 200)

    async def wait_for(self, count: int) -> None:
        """Wait until at least `count` calls arrived (a test fails after WAIT_S)."""
        async with asyncio.timeout(WAIT_S):
            while len(self.calls) < count:
                self._arrived.clear()
                await self._arrived.wait()

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.calls]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiving aiohttp server on 127.0.0.1."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    rec.url = f"http://127.0.0.1:{server.port}/hook"
    yield rec
    await server.close()


async def settled(sim: SimHandle) -> bool:
    """True once the simulator has nothing left to deliver or redeliver."""
    return await sim.outstanding() == 0


def expected_signature(body: bytes, secret: str = SECRET) -> str:
    """base64(HMAC-SHA256(utf8(secret), raw body)), computed independently of the simulator."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def test_webhooks_arrive_signed_with_the_documented_body(
    make_simulator: SimFactory, receiver: Receiver
) -> None:
    """Each change is one POST whose X-Wiseflow-Signature is the HMAC of the raw body."""
    sim = await make_simulator(webhook_url=receiver.url)
    changes = await sim.advance({"grade_changes": 2, "state_changes": 1, "paper_submissions": 1})
    await receiver.wait_for(len(changes))
    for headers, body in receiver.calls:
        assert headers["X-Wiseflow-Signature"] == expected_signature(body)
    bodies = receiver.bodies
    assert [c["sequence"] for c in changes] == [b["sequence"] for b in bodies]
    assert [c["event"] for c in changes] == [b["event"] for b in bodies]
    first = bodies[0]
    assert set(first) == {"id", "sequence", "event", "timestamp", "data"}
    assert set(first["data"]) == {"flowId", "participantId"}
    assert abs(first["timestamp"] - sim.clock.wall()) < 60


async def test_scenario_makes_deliveries_depart_from_the_assumed_format(
    make_simulator: SimFactory, receiver: Receiver
) -> None:
    """Another header, another secret, fields left out and an old timestamp: each as the scenario says."""
    sim = await make_simulator(webhook_url=receiver.url)
    await sim.scenario(
        {
            "webhook_signature_header": "X-Other-Signature",
            "webhook_signing_secret": "other-secret",
            "webhook_omit": ["sequence", "data.flowId"],
            "webhook_timestamp_offset": -3600,
        }
    )
    await sim.advance({"grade_changes": 1})
    await receiver.wait_for(1)
    headers, body = receiver.calls[0]
    assert "X-Wiseflow-Signature" not in headers
    assert headers["X-Other-Signature"] == expected_signature(body, "other-secret")
    doc = json.loads(body)
    assert (set(doc), set(doc["data"])) == ({"id", "event", "timestamp", "data"}, {"participantId"})
    assert 3590 < sim.clock.wall() - doc["timestamp"] < 3660
    state = await sim.scenario({"webhook_signing_secret": None})
    assert (state["webhook_signing_secret"], state["webhook_signature_header"]) == (None, "X-Other-Signature")


async def test_standard_webhooks_scheme(make_simulator: SimFactory, receiver: Receiver) -> None:
    """The Standard Webhooks scheme signs id.timestamp.body with the base64-decoded whsec_ key."""
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    sim = await make_simulator(webhook_url=receiver.url, webhook_scheme="standard", webhook_secret=secret)
    await sim.advance({"grade_changes": 1})
    await receiver.wait_for(1)
    headers, body = receiver.calls[0]
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == expected
    assert headers["webhook-id"] == json.loads(body)["id"]


async def test_duplicates_carry_a_new_id_and_the_same_sequence(
    make_simulator: SimFactory, receiver: Receiver
) -> None:
    """duplicate_rate 1.0: every event arrives twice, with two delivery ids and one sequence."""
    sim = await make_simulator(webhook_url=receiver.url, duplicate_rate=1.0)
    changes = await sim.advance({"grade_changes": 3})
    await receiver.wait_for(2 * len(changes))
    by_sequence: dict[int, set[str]] = {}
    for body in receiver.bodies:
        by_sequence.setdefault(body["sequence"], set()).add(body["id"])
    assert {c["sequence"]: 2 for c in changes} == {seq: len(ids) for seq, ids in by_sequence.items()}


async def test_failed_deliveries_are_redelivered(make_simulator: SimFactory, receiver: Receiver) -> None:
    """A receiver answering 500, 500, then 200 sees three attempts of the same sequence."""
    receiver.script = [500, 500]
    sim = await make_simulator(webhook_url=receiver.url, redelivery_interval=0.05)
    [change] = await sim.advance({"grade_changes": 1})
    await receiver.wait_for(3)
    await wait_until(lambda: settled(sim), what="every delivery settled")  # a wrong 4th would show now
    assert [change["sequence"]] * 3 == [b["sequence"] for b in receiver.bodies]
    assert len({b["id"] for b in receiver.bodies}) == 3
    outcomes = [d["outcome"] for d in await sim.deliveries()]
    assert outcomes == ["failed", "failed", "delivered"]


async def test_redelivery_stops_after_max_attempts(make_simulator: SimFactory, receiver: Receiver) -> None:
    """A receiver that always fails gets exactly max_attempts calls."""
    receiver.script = [503] * 10
    sim = await make_simulator(webhook_url=receiver.url, redelivery_interval=0.02, max_attempts=3)
    await sim.advance({"grade_changes": 1})
    await receiver.wait_for(3)
    await wait_until(lambda: settled(sim), what="every delivery settled")
    assert len(receiver.calls) == 3
    assert [d["attempt"] for d in await sim.deliveries()] == [1, 2, 3]


async def test_unreachable_receiver_is_retried(make_simulator: SimFactory) -> None:
    """A connection error counts as a failed attempt and is retried like a non-2xx."""
    sim = await make_simulator(webhook_url="http://127.0.0.1:9/hook", redelivery_interval=0.02, max_attempts=2)
    await sim.advance({"grade_changes": 1})
    await wait_until(lambda: settled(sim), what="both attempts made")
    assert [d["attempt"] for d in await sim.deliveries()] == [1, 2]
    assert all(d["outcome"].startswith("error:") for d in await sim.deliveries())


async def test_drop_rate_one_loses_every_webhook(make_simulator: SimFactory, receiver: Receiver) -> None:
    """drop_rate 1.0: nothing arrives, and the delivery log says each event was dropped."""
    sim = await make_simulator(webhook_url=receiver.url, drop_rate=1.0)
    changes = await sim.advance({"grade_changes": 3})
    await wait_until(lambda: settled(sim), what="every event settled")
    assert receiver.calls == []
    assert [d["outcome"] for d in await sim.deliveries()] == ["dropped"] * len(changes)


async def test_reorder_delivers_everything_out_of_order(make_simulator: SimFactory, receiver: Receiver) -> None:
    """reorder: all events arrive, but not in sequence order."""
    sim = await make_simulator(webhook_url=receiver.url, reorder=True)
    changes = await sim.advance({"grade_changes": 20})
    await receiver.wait_for(len(changes))
    arrived = [b["sequence"] for b in receiver.bodies]
    assert sorted(arrived) == [c["sequence"] for c in changes]
    assert arrived != sorted(arrived)


async def test_subscriptions_crud_and_test_event(make_simulator: SimFactory, receiver: Receiver) -> None:
    """A /v1/webhooks subscription gets the test event and its events, signed with its own secret."""
    sim = await make_simulator()
    headers = sim.auth_headers()
    request = {"title": "t", "url": receiver.url, "events": ["PAPER_SUBMITTED"], "secret": "sub-secret"}
    async with sim.session.post(sim.api_url + "/webhooks", json=request, headers=headers) as resp:
        created = (await resp.json())["data"]
        assert resp.status == 201
    async with sim.session.post(f"{sim.api_url}/webhooks/{created['id']}/test", headers=headers) as resp:
        assert resp.status == 200
    await receiver.wait_for(1)
    await sim.advance({"grade_changes": 2, "paper_submissions": 1})  # only the hand-in is subscribed
    await receiver.wait_for(2)
    await wait_until(lambda: settled(sim), what="every delivery settled")  # a wrong 3rd would show now
    assert [b["event"] for b in receiver.bodies] == ["PAPER_SUBMITTED", "PAPER_SUBMITTED"]
    headers_seen, body = receiver.calls[1]
    assert headers_seen["X-Wiseflow-Signature"] == expected_signature(body, "sub-secret")
    update = {"active": False}
    async with sim.session.put(f"{sim.api_url}/webhooks/{created['id']}", json=update, headers=headers) as resp:
        assert (await resp.json())["data"]["active"] is False
    async with sim.session.get(sim.api_url + "/webhooks", headers=headers) as resp:
        assert [w["id"] for w in (await resp.json())["data"]] == [created["id"]]
    async with sim.session.delete(f"{sim.api_url}/webhooks/{created['id']}", headers=headers) as resp:
        assert resp.status == 200
    async with sim.session.get(f"{sim.api_url}/webhooks/{created['id']}", headers=headers) as resp:
        assert resp.status == 404


async def test_chaos_profile_advances_on_its_own(make_simulator: SimFactory, receiver: Receiver) -> None:
    """In the chaos profile a background clock changes the world and emits webhooks unasked."""
    sim = await make_simulator(
        profile="chaos", webhook_url=receiver.url, advance_interval=0.05, drop_rate=0.0, error_rate=0.0
    )
    await receiver.wait_for(1)
    assert (await sim.truth())["sequence"] >= 1


async def test_default_policy_is_eight_attempts_at_the_interval(
    make_simulator: SimFactory, receiver: Receiver
) -> None:
    """A receiver that always fails gets WISEflow's 8 attempts, each one redelivery interval after the last."""
    receiver.script = [500] * 20
    sim = await make_simulator(webhook_url=receiver.url, redelivery_interval=0.05)
    await sim.advance({"grade_changes": 1})
    await receiver.wait_for(8)
    await wait_until(lambda: settled(sim), what="every delivery settled")  # a wrong 9th would show now
    log = await sim.deliveries()
    gaps = [later["time"] - earlier["time"] for earlier, later in zip(log, log[1:], strict=False)]
    assert list(range(1, 9)) == [d["attempt"] for d in log]
    assert len(receiver.calls) == 8
    assert [g for g in gaps if g < 0.05] == []


async def test_redelivery_interval_scenario_shortens_the_wait(
    make_simulator: SimFactory, receiver: Receiver
) -> None:
    """With the 15-minute default, {"redelivery_interval": 0.05} brings the redelivery within the test."""
    receiver.script = [500]
    sim = await make_simulator(webhook_url=receiver.url)
    state = await sim.scenario({"redelivery_interval": 0.05})
    [change] = await sim.advance({"grade_changes": 1})
    await receiver.wait_for(2)
    assert (0.05, [change["sequence"]] * 2) == (
        state["redelivery_interval"],
        [b["sequence"] for b in receiver.bodies],
    )
