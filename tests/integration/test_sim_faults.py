"""The simulator's faults on loopback: rate limits, maintenance, 429 storms, 5xx, refused connections."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from service.core.clock import ManualClock
from tests.conftest import SimFactory, SimHandle
from tests.waiting import wait_until


async def _status_and_headers(sim: SimHandle, path: str = "/license/info") -> tuple[int, dict[str, str]]:
    async with sim.session.get(sim.api_url + path, headers=sim.auth_headers()) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def test_burst_of_300_in_one_second_gets_429_with_retry_after(make_simulator: SimFactory) -> None:
    """300 requests within one second: 200 pass, 100 get 429 with an integer Retry-After and rate headers."""
    clock = ManualClock()  # frozen: every request of the burst falls in the same second
    sim = await make_simulator(clock=clock)
    results = await asyncio.gather(*(_status_and_headers(sim) for _ in range(300)))
    statuses = [status for status, _ in results]
    assert (statuses.count(200), statuses.count(429)) == (200, 100)
    refused = [headers for status, headers in results if status == 429]
    assert all(h["Retry-After"] == "1" for h in refused)
    assert all(h["X-RateLimit-Second-Remaining"] == "0" for h in refused)
    clock.advance(1.0)
    assert (await _status_and_headers(sim))[0] == 200


async def test_rate_headers_describe_both_windows(simulator: SimHandle) -> None:
    """An admitted request carries RateLimit-* and the X-RateLimit-Second/Minute-* headers."""
    status, headers = await _status_and_headers(simulator)
    assert status == 200
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == ("200", "199")
    assert (headers["X-RateLimit-Second-Limit"], headers["X-RateLimit-Minute-Limit"]) == ("200", "5000")
    assert headers["X-RateLimit-Minute-Remaining"] == "4999"
    assert int(headers["RateLimit-Reset"]) >= 1


async def test_minute_limit_applies_per_credential(make_simulator: SimFactory) -> None:
    """With 3/min, the 4th call of the API key is 429 until the minute ends, while OAuth still passes."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock, rate_per_minute=3)
    statuses = []
    for _ in range(4):
        statuses.append((await _status_and_headers(sim))[0])
        clock.advance(1.0)
    assert statuses == [200, 200, 200, 429]
    token_headers = {"Authorization": f"Bearer {await sim.token()}"}
    async with sim.session.get(sim.api_url + "/license/info", headers=token_headers) as resp:
        assert resp.status == 200
    clock.advance(57.0)
    assert (await _status_and_headers(sim))[0] == 200


async def test_maintenance_window_is_503_with_retry_after_then_ends(make_simulator: SimFactory) -> None:
    """During maintenance every /v1 call (even the token endpoint) is 503 with Retry-After 10; after, 200."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock)
    await sim.scenario({"maintenance": {"seconds": 30, "retry_after": 10}})
    status, headers = await _status_and_headers(sim)
    assert (status, headers["Retry-After"]) == (503, "10")
    async with sim.session.post(sim.api_url + "/oauth2/token", data={}) as resp:
        assert resp.status == 503
    clock.advance(30.0)
    assert (await _status_and_headers(sim))[0] == 200


async def test_refusing_maintenance_closes_connections(make_simulator: SimFactory) -> None:
    """mode=refuse: the client sees a connection error, no answer; the journal records status 0."""
    sim = await make_simulator(clock=ManualClock())
    await sim.scenario({"maintenance": {"seconds": 5, "mode": "refuse"}})
    with pytest.raises(aiohttp.ClientConnectionError):
        await _status_and_headers(sim)
    assert {e["status"] for e in await sim.journal()} == {0}


async def test_storm_429_with_retry_after(make_simulator: SimFactory) -> None:
    """A 429 storm answers 429 with Retry-After 2 until it ends."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock)
    await sim.scenario({"storm_429": {"seconds": 5, "retry_after": 2}})
    status, headers = await _status_and_headers(sim)
    assert (status, headers["Retry-After"]) == (429, "2")
    clock.advance(5.0)
    assert (await _status_and_headers(sim))[0] == 200


@pytest.mark.parametrize(("key", "status"), [("maintenance", 503), ("storm_429", 429)])
async def test_an_open_ended_window_lasts_until_closed(
    make_simulator: SimFactory, key: str, status: int
) -> None:
    """`{"open": true}` holds the fault however much time passes; `{"open": false}` ends it."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock)
    in_force = await sim.scenario({key: {"open": True, "retry_after": 3}})
    assert (in_force[key]["active"], in_force[key]["seconds_left"]) == (True, None)
    clock.advance(10 * 86_400.0)
    answered, headers = await _status_and_headers(sim)
    assert (answered, headers["Retry-After"]) == (status, "3")
    closed = await sim.scenario({key: {"open": False}})
    assert (closed[key]["active"], closed[key]["seconds_left"]) == (False, 0.0)
    assert (await _status_and_headers(sim))[0] == 200


async def test_the_journal_keeps_each_answers_retry_after_and_when_it_was_answered(
    make_simulator: SimFactory,
) -> None:
    """A 429 and a 503 are journalled with their Retry-After; every line says when it was answered."""
    sim = await make_simulator(clock=ManualClock())
    await _status_and_headers(sim)
    await sim.scenario({"storm_429": {"open": True, "retry_after": 2}})
    await _status_and_headers(sim)
    await sim.scenario({"storm_429": {"open": False}, "maintenance": {"open": True, "retry_after": 7}})
    await _status_and_headers(sim)
    journal = await sim.journal()
    assert [(e["status"], e["retryAfter"]) for e in journal] == [(200, None), (429, "2"), (503, "7")]
    assert all(e["answered"] >= e["time"] for e in journal)


async def test_chaos_profile_stands_still_while_frozen(make_simulator: SimFactory) -> None:
    """`{"frozen": true}` stops the chaos clock's changes; `false` lets it change the world again."""
    sim = await make_simulator(profile="chaos", advance_interval=0.01, drop_rate=0.0, error_rate=0.0)
    assert (await sim.scenario({"frozen": True}))["frozen"] is True
    frozen_at = (await sim.truth())["sequence"]
    for _ in range(5):
        await asyncio.sleep(0.02)  # several ticks of the 10 ms chaos clock: each must change nothing
        assert (await sim.truth())["sequence"] == frozen_at
    await sim.scenario({"frozen": False})
    await wait_until(lambda: moved_on(sim, frozen_at), what="the world changing again")


async def moved_on(sim: SimHandle, sequence: int) -> bool:
    """True once the simulator's world has changed past `sequence`."""
    return int((await sim.truth())["sequence"]) > sequence


async def test_error_rate_one_gives_5xx_envelopes(simulator: SimHandle) -> None:
    """error_rate 1.0: every call is a 500 with the error envelope; reset restores service."""
    await simulator.scenario({"error_rate": 1.0})
    async with simulator.session.get(
        simulator.api_url + "/flow/1001", headers=simulator.auth_headers()
    ) as resp:
        assert resp.status == 500
        assert (await resp.json())["success"] is False
    await simulator.scenario({"reset": True})
    assert (await _status_and_headers(simulator, "/flow/1001"))[0] == 200


async def test_several_scenario_keys_apply_together(simulator: SimHandle) -> None:
    """One body sets latency, token lifetime and a SIS error rate at once and reports them."""
    state = await simulator.scenario({"latency_ms": 1, "token_ttl": 5, "sis_error_rate": 0.5})
    assert (state["latency_ms"], state["token_ttl"], state["sis_error_rate"]) == (1.0, 5.0, 0.5)
    assert (await _status_and_headers(simulator))[0] == 200


async def test_scenario_rate_limits_shape_headers_and_429s_until_reset(make_simulator: SimFactory) -> None:
    """`rate_per_second: 2`: the headers state 2/s, the third request in the window is a 429; reset restores."""
    simulator = await make_simulator(clock=ManualClock())  # frozen: the three requests share one window
    await simulator.scenario({"rate_per_second": 2, "rate_per_minute": 4000})
    first = await _status_and_headers(simulator)
    assert (first[1]["X-RateLimit-Second-Limit"], first[1]["X-RateLimit-Minute-Limit"]) == ("2", "4000")
    statuses = [first[0]] + [(await _status_and_headers(simulator))[0] for _ in range(2)]
    assert statuses == [200, 200, 429]
    state = await simulator.scenario({"reset": True})
    assert (state["rate_per_second"], state["rate_per_minute"]) == (200, 5000)


@pytest.mark.parametrize(
    "body",
    [
        {"earthquake": True},
        {"maintenance": {"seconds": -1}},
        {"maintenance": {"seconds": 5, "mode": "smoke"}},
        {"storm_429": "soon"},
        {"error_rate": "high"},
        {"latency_ms": 10**9},
        {"redelivery_interval": 0},
        {"token_ttl": "5"},
        {"maintenance": {"retry_after": 10}},
        {"maintenance": {"seconds": 5, "open": True}},
        {"maintenance": {"open": "yes"}},
        {"storm_429": {"open": False, "retry_after": 2}},
        {"storm_429": {"seconds": 5, "retry_after": 1.5}},
        {"reset": False},
        {"rate_per_second": 0},
        {"rate_per_minute": 2.5},
        {"webhook_signature_header": "X Bad"},
        {"webhook_signing_secret": ""},
        {"webhook_omit": ["grade"]},
        {"webhook_timestamp_offset": "early"},
        {"shapes": "openapi"},
        {},
        "maintenance",
        [],
    ],
)
async def test_scenario_errors_are_400(simulator: SimHandle, body: object) -> None:
    """Unknown keys and bad values are 400 with a message naming them; nothing changes."""
    async with simulator.session.post(simulator.root + "/_sim/scenario", json=body) as resp:
        answer = await resp.json()
    assert resp.status == 400
    assert answer["error"]["message"]
    assert (await _status_and_headers(simulator))[0] == 200


RATE_HEADERS = [
    f"{prefix}-{part}"
    for prefix in ("RateLimit", "X-RateLimit-Second", "X-RateLimit-Minute")
    for part in ("Limit", "Remaining", "Reset")
]


@pytest.mark.parametrize(
    ("method", "path", "scenario", "status"),
    [
        ("GET", "/flow/999", None, 404),
        ("GET", "/webhooks/7", None, 404),
        ("GET", "/flows/1001/participants?limit=101", None, 400),
        ("GET", "/flow/1001", {"error_rate": 1.0}, 500),
        ("GET", "/flow/1001", {"storm_429": {"open": True, "retry_after": 2}}, 429),
    ],
)
async def test_every_answer_to_a_credential_carries_rate_headers(
    simulator: SimHandle, method: str, path: str, scenario: dict[str, object] | None, status: int
) -> None:
    """Errors too (unknown ids, 400, a simulated 500, a storm's 429) carry all nine rate-limit headers."""
    if scenario is not None:
        await simulator.scenario(scenario)
    headers = simulator.auth_headers()
    async with simulator.session.request(method, simulator.api_url + path, headers=headers) as resp:
        await resp.read()
    assert (status, []) == (resp.status, [h for h in RATE_HEADERS if h not in resp.headers])
    assert resp.headers["X-RateLimit-Minute-Limit"] == "5000"


async def test_storm_headers_say_the_windows_are_spent_until_retry_after(simulator: SimHandle) -> None:
    """A storm's 429: Remaining 0 and Reset equal to its Retry-After, so a client's quota agrees with it."""
    await simulator.scenario({"storm_429": {"open": True, "retry_after": 2}})
    status, headers = await _status_and_headers(simulator)
    assert status == 429
    spent = (headers["RateLimit-Remaining"], headers["RateLimit-Reset"], headers["Retry-After"])
    assert spent == ("0", "2", "2")


async def test_error_rate_fails_about_that_share_of_calls(simulator: SimHandle) -> None:
    """{"error_rate": 0.1}: of 200 calls some, but far from all, are 500s (seeded, so always the same)."""
    await simulator.scenario({"error_rate": 0.1})
    statuses = [(await _status_and_headers(simulator))[0] for _ in range(200)]
    assert set(statuses) == {200, 500}
    assert 5 <= statuses.count(500) <= 50


async def test_latency_scenario_delays_every_answer(simulator: SimHandle) -> None:
    """{"latency_ms": 200}: an answer takes at least 200 ms."""
    loop = asyncio.get_running_loop()
    await simulator.scenario({"latency_ms": 200})
    started = loop.time()
    assert (await _status_and_headers(simulator))[0] == 200
    assert loop.time() - started >= 0.2


async def test_token_ttl_scenario_expires_new_tokens(make_simulator: SimFactory) -> None:
    """{"token_ttl": 5}: a token issued after it works at 4.9 s and is 401 at 5 s."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock)
    await sim.scenario({"token_ttl": 5})
    headers = {"Authorization": f"Bearer {await sim.token()}"}
    statuses = []
    for step in (4.9, 0.1):
        clock.advance(step)
        async with sim.session.get(sim.api_url + "/license/info", headers=headers) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 401]


async def test_design_scenarios_combine_in_one_body(make_simulator: SimFactory) -> None:
    """All of docs/simulator.md's scenario keys in one body are in force together; maintenance answers first."""
    clock = ManualClock()
    sim = await make_simulator(clock=clock)
    state = await sim.scenario(
        {
            "maintenance": {"seconds": 30, "retry_after": 10},
            "storm_429": {"seconds": 40, "retry_after": 2},
            "error_rate": 0.1,
            "latency_ms": 1,
            "token_ttl": 5,
        }
    )
    in_force = (state["maintenance"]["active"], state["storm_429"]["active"], state["error_rate"])
    assert in_force == (True, True, 0.1)
    assert (state["latency_ms"], state["token_ttl"]) == (1.0, 5.0)
    status, headers = await _status_and_headers(sim)
    assert (status, headers["Retry-After"]) == (503, "10")
    clock.advance(30.0)
    status, headers = await _status_and_headers(sim)
    assert (status, headers["Retry-After"]) == (429, "2")
