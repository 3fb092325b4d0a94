"""The whole service receiving real signed webhooks from the simulator.

Duplicates and redeliveries change nothing; out-of-order events leave the newest data; a dropped webhook's
change still arrives through the blind-spot catch-up. The subscription is made with `webhooks ensure`.
Polling is set to once an hour, so after the first run only webhooks (or the catch-up) move data.
"""

from __future__ import annotations

import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from service.app import SERVICE, Service, build_app, start_loops
from service.commands.webhooks import ensure
from service.settings import load_settings
from service.sync.catchup import CatchUp
from tests.conftest import SimFactory, SimHandle
from tests.waiting import wait_until

GRADE_EVENTS = ["FINAL_GRADE", "ASSESSMENT", "ALTERNATIVE_GRADE"]


def free_port() -> int:
    """A loopback port nobody listens on right now (so the service can go down and come back on it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(sim: SimHandle, database: Path) -> dict[str, str]:
    """A service pointed at `sim`, delivering to its fake SIS, polling only once an hour."""
    return {
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": sim.config.client_id,
        "WISEFLOW_CLIENT_SECRET": sim.config.client_secret,
        "WISEFLOW_WEBHOOK_SECRET": sim.config.webhook_secret,
        "SYNC_DATABASE": str(database),
        "SYNC_SINK_URL": sim.sis_url,
        "SYNC_POLL_INTERVAL": "3600",
        "SYNC_RATE_PER_SECOND": "200",
        "SYNC_RATE_PER_MINUTE": "5000",
    }


class Services:
    """Starts the service on a fixed loopback port; can stop it and start it again on the same port."""

    def __init__(self) -> None:
        self.servers: list[TestServer] = []

    async def start(self, env: dict[str, str], port: int, *, catchup_horizon: float | None = None) -> Service:
        server = TestServer(build_app(load_settings(env), start=False), host="127.0.0.1", port=port)
        await server.start_server()
        self.servers.append(server)
        service = server.app[SERVICE]
        if catchup_horizon is not None:
            # The real horizon is 2 h; the same code with a 1 s horizon shows the catch-up in a test.
            service.catchup = CatchUp(
                service.uow,
                service.poller.refresh,
                service.signals,
                service.clock,
                horizon=catchup_horizon,
                interval=0.2,
            )
        await start_loops(service)
        await wait_until(lambda: settled(service), what="the first run settled")
        return service

    async def stop_all(self) -> None:
        for server in self.servers:
            await server.close()
        self.servers.clear()


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    s = Services()
    yield s
    await s.stop_all()


async def nothing_outstanding(sim: SimHandle) -> bool:
    """The simulator has no webhook left to deliver or redeliver."""
    return await sim.outstanding() == 0


async def settled(service: Service) -> bool:
    """A sync run is over, no webhook event is pending, and the outbox is empty."""
    async with service.uow.read() as unit:
        pending = (await unit.inbox.counts()).get("pending", 0)
    if service.status.runs < 1 or pending:
        return False
    async with service.store.db.execute("SELECT COUNT(*) FROM outbox WHERE status != 'delivered'") as cursor:
        row = await cursor.fetchone()
    return row is not None and row[0] == 0


async def subscribe(sim: SimHandle, env: dict[str, str], port: int) -> None:
    """`webhooks ensure` against the simulator, for the grade events."""
    url = f"http://127.0.0.1:{port}/webhooks/wiseflow"
    assert await ensure(load_settings(env), url, GRADE_EVENTS, dry_run=False, out=io.StringIO()) == 0


async def truth_grades(sim: SimHandle) -> dict[tuple[int, int], str]:
    """(flowId, participantId) -> grade, as WISEflow holds it now."""
    truth = await sim.truth()
    return {
        (int(f["flow"]["id"]), int(a["participantId"])): str(a["grade"])
        for f in truth["flows"]
        for a in f["assessments"]
    }


async def mirror_grades(service: Service) -> dict[tuple[int, int], str]:
    async with service.store.db.execute("SELECT flow_id, participant_id, grade FROM assessments") as cursor:
        return {(int(r[0]), int(r[1])): str(r[2]) for r in await cursor.fetchall()}


def latest_sis(sis: dict[str, Any]) -> dict[tuple[int, int], str]:
    """The last grade the SIS received per participant."""
    out: dict[tuple[int, int], str] = {}
    for d in sis["deliveries"]:
        out[(int(d["flowId"]), int(d["participantId"]))] = str(d["grade"])
    return out


def pairs(changes: list[dict[str, Any]]) -> set[tuple[int, int]]:
    return {(int(c["flowId"]), int(c["participantId"])) for c in changes if c["event"] in GRADE_EVENTS}


async def inbox_status(service: Service, sequences: list[int]) -> dict[int, str]:
    marks = ",".join("?" for _ in sequences)
    async with service.store.db.execute(
        f"SELECT sequence, status FROM inbox WHERE sequence IN ({marks})",  # noqa: S608 - placeholders only
        sequences,
    ) as cursor:
        return {int(r[0]): str(r[1]) for r in await cursor.fetchall()}


async def test_duplicates_and_redeliveries_change_nothing(
    make_simulator: SimFactory, services: Services, tmp_path: Path
) -> None:
    """Service down during the changes: WISEflow redelivers (each twice); one inbox row per event, SIS once."""
    sim = await make_simulator(duplicate_rate=1.0, redelivery_interval=0.2, max_attempts=50)
    port, env = free_port(), service_env(sim, tmp_path / "s.sqlite3")
    await services.start(env, port)
    await subscribe(sim, env, port)
    await services.stop_all()
    changes = [c for c in await sim.advance({"grade_changes": 4}) if c["event"] in GRADE_EVENTS]
    sequences = [int(c["sequence"]) for c in changes]

    async def refused() -> bool:
        failed = {d["sequence"] for d in await sim.deliveries() if d["outcome"].startswith("error")}
        return set(sequences) <= failed

    await wait_until(refused, what="every event refused while the service is down")
    before = await sim.sis_grades()
    service = await services.start(env, port)

    async def processed() -> bool:
        return set((await inbox_status(service, sequences)).values()) == {"done"}

    await wait_until(processed, what="every event processed")
    await wait_until(lambda: settled(service), what="the service settled")
    # The remaining duplicate redeliveries arrive until WISEflow has nothing left to send; they change nothing.
    await wait_until(lambda: nothing_outstanding(sim), what="every redelivery made")
    await wait_until(lambda: settled(service), what="the service settled again")
    delivered = [
        d for d in await sim.deliveries() if d["outcome"] == "delivered" and d["sequence"] in sequences
    ]
    assert len(delivered) >= 2 * len(sequences)  # every event came at least twice
    assert await inbox_status(service, sequences) == dict.fromkeys(sequences, "done")
    sis = await sim.sis_grades()
    assert sis["duplicates"] == before["duplicates"]
    truth = await truth_grades(sim)
    new = [d for d in sis["deliveries"][len(before["deliveries"]) :]]
    assert sorted((d["flowId"], d["participantId"]) for d in new) == sorted(pairs(changes))
    assert all(latest_sis(sis)[p] == truth[p] for p in pairs(changes))


async def test_out_of_order_events_leave_the_newest_data(
    make_simulator: SimFactory, services: Services, tmp_path: Path
) -> None:
    """Reordered, duplicated webhooks for repeated grade changes: mirror and SIS end at the truth."""
    sim = await make_simulator(reorder=True, duplicate_rate=0.5, participants=3, flows=6)
    port, env = free_port(), service_env(sim, tmp_path / "s.sqlite3")
    service = await services.start(env, port)
    await subscribe(sim, env, port)
    changes: list[dict[str, Any]] = []
    for _ in range(5):  # few participants, many changes: the same person's grade changes several times
        changes += [c for c in await sim.advance({"grade_changes": 6}) if c["event"] in GRADE_EVENTS]
    sequences = [int(c["sequence"]) for c in changes]

    async def processed() -> bool:
        statuses = await inbox_status(service, sequences)
        return len(statuses) == len(sequences) and set(statuses.values()) == {"done"}

    await wait_until(processed, what="every event processed")
    await wait_until(lambda: settled(service), what="the service settled")
    truth, mirror, sis = (
        await truth_grades(sim),
        await mirror_grades(service),
        latest_sis(await sim.sis_grades()),
    )
    assert {p: mirror[p] for p in pairs(changes)} == {p: truth[p] for p in pairs(changes)}
    assert {p: sis[p] for p in pairs(changes)} == {p: truth[p] for p in pairs(changes)}
    assert (await sim.sis_grades())["duplicates"] == 0


async def test_a_dropped_webhook_arrives_through_the_catch_up(
    make_simulator: SimFactory, services: Services, tmp_path: Path
) -> None:
    """Every webhook lost: after a silence longer than the horizon the catch-up brings the grades of flows
    in marking (active in the gap) to the SIS."""
    sim = await make_simulator(drop_rate=1.0)
    port, env = free_port(), service_env(sim, tmp_path / "s.sqlite3")
    service = await services.start(env, port, catchup_horizon=1.0)
    await subscribe(sim, env, port)
    catchups_before = service.catchup.catchups
    # ASSESSMENT: a grade set during marking (an active flow); a concluded flow's late FINAL_GRADE whose
    # webhook is lost is the daily reconciliation's, not the catch-up's.
    changes = [c for c in await sim.advance({"grade_changes": 6}) if c["event"] == "ASSESSMENT"]
    assert changes
    truth = await truth_grades(sim)

    async def arrived() -> bool:
        sis = latest_sis(await sim.sis_grades())
        return all(sis.get(p) == truth[p] for p in pairs(changes))

    await wait_until(arrived, what="the changes at the SIS")
    dropped = [d for d in await sim.deliveries() if d["outcome"] == "dropped"]
    assert {d["sequence"] for d in dropped} >= {c["sequence"] for c in changes}
    assert service.figures.received == 0  # nothing came by webhook
    assert service.status.runs == 1  # and no second polling run happened

    async def caught_up() -> bool:
        return service.catchup.catchups > catchups_before

    await wait_until(caught_up, what="a completed catch-up")  # the change came with a completed catch-up


async def test_standard_webhooks_scheme_with_a_whsec_secret(
    make_simulator: SimFactory, services: Services, tmp_path: Path
) -> None:
    """WISEFLOW_WEBHOOK_SCHEME=standard with a whsec_ secret: the simulator's signed events are processed."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sim = await make_simulator(webhook_scheme="standard", webhook_secret=secret)
    port = free_port()
    env = {**service_env(sim, tmp_path / "s.sqlite3"), "WISEFLOW_WEBHOOK_SCHEME": "standard"}
    service = await services.start(env, port)
    await subscribe(sim, env, port)
    changes = [c for c in await sim.advance({"grade_changes": 2}) if c["event"] in GRADE_EVENTS]
    sequences = [int(c["sequence"]) for c in changes]

    async def processed() -> bool:
        return await inbox_status(service, sequences) == dict.fromkeys(sequences, "done")

    await wait_until(processed, what="every event processed")
    assert service.figures.rejected == {}


async def test_a_withdrawn_grade_reaches_the_sis_as_an_explicit_withdrawal(
    make_simulator: SimFactory, services: Services, tmp_path: Path
) -> None:
    """Two delivered grades withdrawn in WISEflow: their webhooks bring one withdrawal record each to the
    SIS (grade null, `withdrawn: true`, a key of its own), the mirror forgets them, /metrics counts them."""
    sim = await make_simulator(participants=3, flows=6)
    port, env = free_port(), service_env(sim, tmp_path / "s.sqlite3")
    service = await services.start(env, port)
    await subscribe(sim, env, port)
    delivered = latest_sis(await sim.sis_grades())
    changes = await sim.advance({"grade_withdrawals": 2})
    assert [c["withdrawn"] for c in changes] == [True, True]
    gone = pairs(changes)
    assert gone <= set(delivered)  # each had reached the SIS

    async def withdrawn() -> list[dict[str, Any]]:
        sis = await sim.sis_grades()
        return [d for d in sis["deliveries"] if d.get("withdrawn")]

    async def arrived() -> bool:
        return {(d["flowId"], d["participantId"]) for d in await withdrawn()} == gone

    await wait_until(arrived, what="both withdrawals at the SIS")
    await wait_until(lambda: settled(service), what="the service settled")
    records = await withdrawn()
    assert len(records) == 2
    assert all((r["grade"], r["adminGrade"], r["date"]) == (None, None, None) for r in records)
    assert all(r["idempotencyKey"].startswith("wfs-withdrawn-v1-") for r in records)
    assert not gone & set(await mirror_grades(service))
    async with service.session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    assert "wiseflow_grades_withdrawn_total 2.0" in text
