"""The webhook endpoint over real HTTP and real SQLite: every answer, and what each one stores."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.adapters.webhook_http import MAX_BODY, WEBHOOK_PATH, verifier_from_settings
from service.app import build_app
from service.errors import ConfigError
from service.settings import load_settings
from tests.integration.webhook_helpers import (
    NOW,
    SECRET,
    Harness,
    event_body,
    running_receiver,
    signed,
    standard_signed,
)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_receiver(tmp_path) as h:
        yield h


async def test_a_verified_event_is_stored_before_the_200(harness: Harness) -> None:
    """A signed event gets 200 'accepted' and is already committed (pending) when the answer arrives."""
    body = event_body(sequence=5)
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
    assert response.status == 200
    assert await response.json() == {"status": "accepted"}
    assert await harness.rows() == [(5, "FINAL_GRADE", "pending")]
    assert await harness.deliveries() == ["delivery-5"]
    assert harness.wakes == [1]


async def test_missing_signature_is_401_and_stores_nothing(harness: Harness) -> None:
    """No signature header: 401 missing_signature, nothing stored."""
    response = await harness.client.post(WEBHOOK_PATH, data=event_body())
    assert (response.status, await response.json()) == (401, {"error": "missing_signature"})
    assert await harness.rows() == []


async def test_bad_signature_is_401_and_stores_nothing(harness: Harness) -> None:
    """A body signed with another secret: 401 bad_signature, nothing stored, counted."""
    body = event_body()
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers=signed(body, secret="other"))
    assert (response.status, await response.json()) == (401, {"error": "bad_signature"})
    assert await harness.rows() == []
    assert harness.figures.rejected["bad_signature"] == 1


@pytest.mark.parametrize("timestamp", [NOW - 301, NOW + 301, -5, 0, 10**13, 2**63 - 1])
async def test_stale_body_timestamp_is_401(harness: Harness, timestamp: int) -> None:
    """A correctly signed body whose timestamp is outside the replay window (either way) is 401."""
    body = event_body(timestamp=timestamp)
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
    assert (response.status, await response.json()) == (401, {"error": "stale_timestamp"})
    assert await harness.rows() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "not_an_object"),
        (event_body(sequence="5"), "bad_sequence"),  # type: ignore[arg-type]
        (
            orjson.dumps({"id": "d", "event": "FINAL_GRADE", "timestamp": NOW, "data": {"flowId": 1}}),
            "missing_sequence",
        ),
        (event_body(flow_id=None), "missing_flowId"),
        (event_body(timestamp=1.5), "bad_timestamp"),
        (event_body(timestamp=True), "bad_timestamp"),
        (event_body(timestamp=str(NOW)), "bad_timestamp"),
        (event_body(timestamp=2**64 - 1), "bad_timestamp"),
        (event_body().replace(str(NOW).encode(), b"99999999999999999999999"), "bad_timestamp"),
        (orjson.dumps({"id": "d", "sequence": 5, "event": "X", "data": {"flowId": 1}}), "missing_timestamp"),
        (orjson.dumps({"id": "d", "sequence": 5, "timestamp": NOW, "data": {"flowId": 1}}), "missing_event"),
        (b'"an event"', "not_an_object"),
        (b"5", "not_an_object"),
        (b"", "bad_json"),
        (event_body(sequence=2**63), "bad_sequence"),
        (event_body(sequence=-3), "bad_sequence"),
        (event_body(sequence=5.0), "bad_sequence"),  # type: ignore[arg-type]
        (event_body(data=[1]), "bad_data"),
        (event_body(data={"flowId": "10"}), "bad_flowId"),
    ],
)
async def test_malformed_verified_bodies_are_400(harness: Harness, body: bytes, reason: str) -> None:
    """A correctly signed body that is not a well-formed event: 400 with the reason, nothing stored."""
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
    assert (response.status, await response.json()) == (400, {"error": reason})
    assert await harness.rows() == []


async def test_declared_oversized_body_is_413(harness: Harness) -> None:
    """A Content-Length over the limit (64 KiB) is refused with 413 before the body is read."""
    body = b"x" * (MAX_BODY + 1)
    response = await harness.client.post(WEBHOOK_PATH, data=io.BytesIO(body), headers=signed(body))
    assert (response.status, await response.json()) == (413, {"error": "too_large"})
    assert await harness.rows() == []


async def test_chunked_oversized_body_is_413(harness: Harness) -> None:
    """A chunked body (no Content-Length) is counted as it arrives and refused once over the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536

    response = await harness.client.post(WEBHOOK_PATH, data=chunks(), headers={"X-Wiseflow-Signature": "x"})
    assert (response.status, await response.json()) == (413, {"error": "too_large"})


async def test_body_of_exactly_the_limit_is_read(harness: Harness) -> None:
    """The limit is inclusive: a body of exactly 64 KiB (unsigned) is judged on its signature (401, not 413)."""
    body = b" " * MAX_BODY
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers={"X-Wiseflow-Signature": "x"})
    assert response.status == 401


async def test_unknown_event_type_is_stored_and_answered_200(harness: Harness) -> None:
    """A verified event of a type we do not handle is stored as 'unknown', counted, answered 200."""
    body = event_body(sequence=9, event="SOMETHING_NEW", flow_id=None)
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
    assert (response.status, await response.json()) == (200, {"status": "stored_unknown"})
    assert await harness.rows() == [(9, "SOMETHING_NEW", "unknown")]
    assert harness.figures.unknown == 1
    assert harness.wakes == []


async def test_duplicates_are_200_and_stored_once_with_every_delivery_id(harness: Harness) -> None:
    """The same event again, and under a new delivery id: 200 'duplicate', one row, every delivery recorded
    (a delivery id is recorded as it came, never used as a key: the same one twice is two deliveries)."""
    body = event_body(sequence=3)
    again = event_body(sequence=3, id="delivery-3-retry")
    answers = []
    for payload in (body, body, again):
        response = await harness.client.post(WEBHOOK_PATH, data=payload, headers=signed(payload))
        answers.append((response.status, (await response.json())["status"]))
    assert answers == [(200, "accepted"), (200, "duplicate"), (200, "duplicate")]
    assert await harness.rows() == [(3, "FINAL_GRADE", "pending")]
    assert await harness.deliveries() == ["delivery-3", "delivery-3", "delivery-3-retry"]
    assert harness.figures.duplicates == 2


async def test_concurrent_deliveries_of_one_event_store_it_once(harness: Harness) -> None:
    """Twenty concurrent deliveries of one sequence (group-committed together) give one row, all 200."""
    bodies = [event_body(sequence=42, id=f"d-{i}") for i in range(20)]
    responses = await asyncio.gather(
        *(harness.client.post(WEBHOOK_PATH, data=b, headers=signed(b)) for b in bodies)
    )
    statuses = sorted([(r.status, (await r.json())["status"]) for r in responses])
    assert statuses == [(200, "accepted")] + [(200, "duplicate")] * 19
    assert await harness.rows() == [(42, "FINAL_GRADE", "pending")]
    assert len(await harness.deliveries()) == 20


async def test_database_failure_is_503_so_wiseflow_redelivers(harness: Harness) -> None:
    """When the database cannot be written the event is not acknowledged: 503, never 200 or 500."""
    await harness.store.db.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    body = event_body(sequence=1)
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers=signed(body))
    assert (response.status, await response.json()) == (503, {"error": "unavailable"})
    assert await harness.rows() == []


async def test_a_failed_group_commit_rolls_back_and_the_next_one_commits(harness: Harness) -> None:
    """A batch that fails mid-transaction stores nothing of itself (503) and leaves the store usable."""
    await harness.store.db.execute(
        "CREATE TEMP TRIGGER refuse_13 BEFORE INSERT ON inbox WHEN NEW.delivery_id = 'delivery-13' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    refused, stored = event_body(sequence=13), event_body(sequence=14)
    first = await harness.client.post(WEBHOOK_PATH, data=refused, headers=signed(refused))
    second = await harness.client.post(WEBHOOK_PATH, data=stored, headers=signed(stored))
    assert [(first.status, await first.json()), (second.status, await second.json())] == [
        (503, {"error": "unavailable"}),
        (200, {"status": "accepted"}),
    ]
    assert (await harness.rows(), await harness.deliveries()) == (
        [(14, "FINAL_GRADE", "pending")],
        ["delivery-14"],
    )


async def test_answers_never_echo_the_secret_or_signature(harness: Harness) -> None:
    """No answer carries the secret or the signature it was sent."""
    body = event_body()
    headers = signed(body, secret="wrong")
    response = await harness.client.post(WEBHOOK_PATH, data=body, headers=headers)
    text = await response.text()
    assert SECRET not in text
    assert headers["X-Wiseflow-Signature"] not in text


async def test_standard_scheme_end_to_end(tmp_path: Path) -> None:
    """With the standard scheme, webhook-* headers verify and the header timestamp is the replay check."""
    async with running_receiver(tmp_path, scheme="standard") as h:
        body = event_body(sequence=8)
        ok = await h.client.post(WEBHOOK_PATH, data=body, headers=standard_signed(body, "msg_1"))
        stale = await h.client.post(WEBHOOK_PATH, data=body, headers=standard_signed(body, "msg_2", NOW - 400))
        assert (ok.status, stale.status) == (200, 401)
        assert await stale.json() == {"error": "stale_timestamp"}
        assert await h.rows() == [(8, "FINAL_GRADE", "pending")]


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "a-plain-secret"])
async def test_standard_scheme_signature_lists_and_header_case(tmp_path: Path, secret: str) -> None:
    """Standard Webhooks: any-case header names and a valid v1 among many entries pass; v1a alone is 401."""
    async with running_receiver(tmp_path, scheme="standard", secrets=(secret,)) as h:
        body = event_body(sequence=9)
        headers = standard_signed(body, "msg_9", secret=secret)
        valid = headers["webhook-signature"]
        headers["webhook-signature"] = " ".join(["v1a,abc", *["v1,AAAA"] * 12, valid, "v2,x"])
        upper = {name.upper(): value for name, value in headers.items()}
        ok = await h.client.post(WEBHOOK_PATH, data=body, headers=upper)
        headers["webhook-signature"] = "v1a," + valid.removeprefix("v1,")
        other = await h.client.post(WEBHOOK_PATH, data=event_body(sequence=10), headers=headers)
        assert (ok.status, other.status, await other.json()) == (200, 401, {"error": "bad_signature"})
        assert await h.rows() == [(9, "FINAL_GRADE", "pending")]


async def test_standard_scheme_body_without_id_or_timestamp_uses_the_signed_headers(tmp_path: Path) -> None:
    """Standard Webhooks: a body with no id or timestamp takes webhook-id and webhook-timestamp."""
    async with running_receiver(tmp_path, scheme="standard") as h:
        body = orjson.dumps({"sequence": 11, "event": "ASSESSMENT", "data": {"flowId": 3}})
        response = await h.client.post(WEBHOOK_PATH, data=body, headers=standard_signed(body, "msg_11"))
        assert (response.status, await h.rows(), await h.deliveries()) == (
            200,
            [(11, "ASSESSMENT", "pending")],
            ["msg_11"],
        )


async def test_rotated_secrets_are_both_accepted(tmp_path: Path) -> None:
    """During a rotation, events signed with the old or the new secret are both stored."""
    async with running_receiver(tmp_path, secrets=("old-webhook-secret-0", "new-webhook-secret-1")) as h:
        for sequence, secret in ((1, "old-webhook-secret-0"), (2, "new-webhook-secret-1")):
            body = event_body(sequence=sequence)
            response = await h.client.post(WEBHOOK_PATH, data=body, headers=signed(body, secret=secret))
            assert response.status == 200
        assert [r[0] for r in await h.rows()] == [1, 2]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_a_json_405(harness: Harness, method: str) -> None:
    """Any method but POST gets 405 with `Allow: POST` and a short JSON answer; nothing is stored or counted."""
    body = event_body(sequence=4)
    response = await harness.client.request(method, WEBHOOK_PATH, data=body, headers=signed(body))
    assert (response.status, response.headers["Allow"], await response.json()) == (
        405,
        "POST",
        {"error": "method_not_allowed"},
    )
    assert (await harness.rows(), harness.figures.received) == ([], 0)


async def test_a_signed_body_is_accepted_whatever_its_content_type(harness: Harness) -> None:
    """The signature, not the Content-Type, decides: a verified event sent as text/plain is still stored."""
    body = event_body(sequence=5)
    response = await harness.client.post(
        WEBHOOK_PATH, data=body, headers={**signed(body), "Content-Type": "text/plain"}
    )
    assert response.status == 200
    assert await harness.rows() == [(5, "FINAL_GRADE", "pending")]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-unknown"])
async def test_compressed_bodies_are_415_unread(harness: Harness, encoding: str) -> None:
    """Any Content-Encoding but identity is refused unread: 415 from us, or 400 from aiohttp's own decoder."""
    headers = {"Content-Encoding": encoding, "X-Wiseflow-Signature": "x"}
    response = await harness.client.post(WEBHOOK_PATH, data=b"{}", headers=headers)
    assert response.status in (400, 415)
    assert await harness.rows() == []


async def test_a_body_slower_than_the_read_timeout_is_408(tmp_path: Path) -> None:
    """A sender trickling its body past the read timeout gets 408 and holds no handler."""

    never = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        await never.wait()  # the rest of the body never comes: only the read timeout can end the request
        yield b"}"

    async with running_receiver(tmp_path, read_timeout=0.2) as h:
        response = await h.client.post(WEBHOOK_PATH, data=trickle(), headers={"X-Wiseflow-Signature": "x"})
        assert (response.status, await response.json()) == (408, {"error": "body_timeout"})


def test_an_unusable_whsec_secret_is_a_configuration_error() -> None:
    """A whsec_ secret that is not base64, under the standard scheme, names the variable and not the value."""
    env = {"WISEFLOW_WEBHOOK_SCHEME": "standard", "WISEFLOW_WEBHOOK_SECRET": "whsec_!!not-base64"}
    with pytest.raises(ConfigError) as info:
        verifier_from_settings(load_settings(env))
    assert (info.value.variable, "!!not-base64" in str(info.value)) == ("WISEFLOW_WEBHOOK_SECRET", False)


async def test_the_service_app_answers_a_wrong_method_with_json(tmp_path: Path) -> None:
    """Through build_app, GET on the webhook path is a JSON 405 (Allow: POST), not aiohttp's text page."""
    env = {
        "WISEFLOW_API_KEY": "k",
        "WISEFLOW_WEBHOOK_SECRET": "webhook-secret-0123456789",
        "SYNC_DATABASE": str(tmp_path / "a.sqlite3"),
    }
    async with TestClient(TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")) as client:
        response = await client.get(WEBHOOK_PATH)
        assert (response.status, response.headers["Allow"], await response.json()) == (
            405,
            "POST",
            {"error": "method_not_allowed"},
        )
