"""The simulator's world, its changes and its scenario parsing, without HTTP."""

from __future__ import annotations

import random

import pytest

from service.core.clock import ManualClock
from service.core.signatures import WebhookVerifier
from service.simulator.advance import AdvanceError, apply_step, parse_step
from service.simulator.config import make_sim_config
from service.simulator.scenario import Scenario, ScenarioError
from service.simulator.webhooks import Target, sign_headers
from service.simulator.world import STATE_NAMES, World


def test_same_seed_gives_the_same_world() -> None:
    """Two worlds of one seed agree on flows, participants and grades; another seed differs."""
    a, b, c = World(7, 12, 30), World(7, 12, 30), World(8, 12, 30)
    assert [a.basic_flow(f) for f in a.flows] == [b.basic_flow(f) for f in b.flows]
    assert a.participants(1004, 0, 30) == b.participants(1004, 0, 30)
    assert a.assessments(1004) == b.assessments(1004)
    assert a.participants(1004, 0, 30) != c.participants(1004, 0, 30)


def test_every_state_is_present() -> None:
    """Six flows or more cover all six states."""
    world = World(1, 6, 5)
    assert set(STATE_NAMES) == {world.search_record(f)["state"] for f in world.flows}


def test_large_world_stores_no_participants_up_front() -> None:
    """2,000 flows x 200 participants: only flows are stored; a page is drawn on demand."""
    world = World(3, 2000, 200)
    assert len(world.flows) == 2000
    assert not world.grade_overrides
    assert not world.submissions
    page = world.participants(2500, 100, 100)
    assert [world.participant_id(2500, i) for i in range(100, 200)] == [p["participantId"] for p in page]


def test_grades_exist_only_from_marking_on() -> None:
    """Flows before PARTICIPATION_ENDED have no assessments; concluded flows do."""
    world = World(1, 12, 40)
    by_state = {world.states[f]: f for f in world.flows}
    assert world.assessments(by_state[2]) == []
    assert world.assessments(by_state[4])


def test_advance_changes_grades_states_and_hand_ins() -> None:
    """One step makes the asked changes, with increasing sequence numbers, and records the hand-in event."""
    world = World(1, 24, 10)
    changes = apply_step(
        world, random.Random(1), {"grade_changes": 2, "state_changes": 1, "paper_submissions": 1}, 100
    )
    assert ["grade" if c.event in ("ASSESSMENT", "FINAL_GRADE") else c.event for c in changes] == [
        "FLOW_STATE_UPDATED",
        "grade",
        "grade",
        "PAPER_SUBMITTED",
    ]
    assert [c.sequence for c in changes] == [1, 2, 3, 4]
    assert world.events[-1]["type"] == "PAPER_HANDED_IN"
    grade_change = changes[1]
    assert grade_change.participant_id is not None
    index = grade_change.participant_id - world.participant_id(grade_change.flow_id, 0)
    current = world.grade(grade_change.flow_id, index)
    assert current is not None
    assert grade_change.detail["grade"] == current.grade


def test_a_withdrawn_grade_leaves_the_assessments_until_graded_again() -> None:
    """A withdrawal takes a graded participant's assessment away and says so in its change; a later grade
    change of that participant brings one back."""
    world = World(1, 24, 10)
    (change,) = apply_step(world, random.Random(1), {"grade_withdrawals": 1}, 100)
    assert change.event in ("ASSESSMENT", "FINAL_GRADE")
    assert change.detail == {"grade": None, "withdrawn": True}

    def listed() -> bool:
        return change.participant_id in {a["participantId"] for a in world.assessments(change.flow_id)}

    assert not listed()
    rng = random.Random(2)
    for _ in range(1000):  # grade changes pick flows and participants at random: until it is this one
        apply_step(world, rng, {"grade_changes": 5}, 200)
        if listed():
            break
    assert listed()


@pytest.mark.parametrize(
    "body", [[], {"grade_changes": -1}, {"grade_changes": "3"}, {"teleport": 1}, {"state_changes": True}]
)
def test_bad_advance_bodies_are_refused(body: object) -> None:
    """Unknown keys, negative counts and non-integers are refused with a message."""
    with pytest.raises(AdvanceError):
        parse_step(body)


def test_scenario_applies_all_keys_or_none() -> None:
    """A body with one bad key changes nothing."""
    config = make_sim_config(env={})
    scenario = Scenario.from_config(config)
    with pytest.raises(ScenarioError, match="latency_ms"):
        scenario.apply({"error_rate": 0.5, "latency_ms": -1}, 0.0, config)
    assert scenario.error_rate == 0.0


def test_scenario_windows_close_on_the_clock() -> None:
    """A 30 s maintenance window is open at 29.9 s and closed at 30 s; reset clears everything."""
    clock = ManualClock()
    config = make_sim_config(env={})
    scenario = Scenario.from_config(config)
    scenario.apply(
        {"maintenance": {"seconds": 30, "retry_after": 10}, "error_rate": 0.3}, clock.monotonic(), config
    )
    assert (scenario.in_maintenance(29.9), scenario.maintenance_retry_after) == (True, 10)
    assert not scenario.in_maintenance(30.0)
    scenario.apply({"reset": True}, clock.monotonic(), config)
    assert (scenario.in_maintenance(0.0), scenario.error_rate) == (False, 0.0)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"volcano": 1},
        {"maintenance": {"seconds": "x"}},
        {"maintenance": {"seconds": 5, "mode": "explode"}},
        {"maintenance": {"retry_after": 5}},
        {"storm_429": {"seconds": 5, "retry_after": 1.5}},
        {"error_rate": 2},
        {"token_ttl": 0},
        {"reset": False},
        {"reorder": "yes"},
        {"frozen": 1},
    ],
)
def test_bad_scenarios_are_refused(body: dict[str, object]) -> None:
    """Unknown keys and bad values raise ScenarioError."""
    config = make_sim_config(env={})
    with pytest.raises(ScenarioError):
        Scenario.from_config(config).apply(body, 0.0, config)


def test_config_reads_credentials_from_the_environment() -> None:
    """The service's variables set the simulator's credentials; the first of several secrets signs."""
    env = {
        "WISEFLOW_CLIENT_ID": "id-1",
        "WISEFLOW_API_KEY": "key-1",
        "WISEFLOW_WEBHOOK_SECRET": "new-webhook-secret-0, old-webhook-secret-1",
    }
    config = make_sim_config(env=env)
    assert (config.client_id, config.api_key, config.webhook_secret) == (
        "id-1",
        "key-1",
        "new-webhook-secret-0",
    )
    assert config.client_secret == "demo-secret"


def test_config_refuses_unknown_fields_and_bad_values() -> None:
    """A typo or an impossible value is a ValueError naming it."""
    with pytest.raises(ValueError, match="colour"):
        make_sim_config(env={}, colour="red")
    with pytest.raises(ValueError, match="drop_rate"):
        make_sim_config(env={}, drop_rate=1.5)


@pytest.mark.parametrize("scheme", ["wiseflow", "standard"])
def test_delivery_headers_verify_with_the_service_verifier(scheme: str) -> None:
    """What the simulator signs, the service's verifier accepts, in both schemes."""
    secret = "whsec_c2VjcmV0LWtleS1ieXRlcw==" if scheme == "standard" else "demo-webhook-secret"
    target = Target("http://x", secret, scheme, "X-Wiseflow-Signature")
    body = b'{"id":"d-1","sequence":1}'
    headers = sign_headers(target, "d-1", 1_700_000_000, body)
    verifier = WebhookVerifier(scheme, (secret,), "X-Wiseflow-Signature", 300.0)
    verified = verifier.verify(headers, body, now=1_700_000_010)
    assert ("d-1" if scheme == "standard" else None) == verified.message_id


def test_chaos_profile_turns_on_faults_and_the_background_clock() -> None:
    """chaos: duplicates, losses, disorder, a little 5xx and a moving world; overrides still win."""
    config = make_sim_config("chaos", env={}, drop_rate=0.0)
    faults = (config.duplicate_rate, config.drop_rate, config.reorder, config.error_rate)
    assert faults == (0.2, 0.0, True, 0.02)
    assert config.background_advance
    assert not make_sim_config("calm", env={}).background_advance
