"""Whatever a client sends, the simulator answers without a 500 (outside injected faults) or a stack trace."""

from __future__ import annotations

import itertools

import pytest

from tests.conftest import SimHandle

ENDPOINTS = [
    ("POST", "/v1/oauth2/token"),
    ("POST", "/v1/flows/search"),
    ("POST", "/v1/flows/search?limit=1e3&offset=x"),
    ("GET", "/v1/flow/1001"),
    ("GET", "/v1/flow/99999999999999999999"),
    ("GET", "/v1/flows/1001/participants?offset=99999"),
    ("POST", "/v1/participation-events"),
    ("POST", "/v1/webhooks"),
    ("PUT", "/v1/webhooks/1"),
    ("POST", "/_sim/advance"),
    ("POST", "/_sim/scenario"),
    ("GET", "/_sim/journal?since=soon"),
    ("POST", "/_sis/grades"),
]
BODIES = [
    b"",
    b"null",
    b"0",
    b'"text"',
    b"[]",
    b"{}",
    b"\x00\xff",
    b'{"metadata": null, "dates": {"marking": {"start": 1, "startComparator": "SIDEWAYS"}}}',
    b'{"metadata": {"states": null, "title": 5, "createdAt": []}}',
    b'{"timestamp": null, "types": [1], "pagination": {"limit": true}}',
    b'{"pagination": [], "flowId": 1.5}',
    b'{"url": "https://x", "events": [["FINAL_GRADE"]], "active": "yes"}',
    b'{"maintenance": {"seconds": 1e999}}',
    b'{"grade_changes": 1e3}',
    b"[" * 5000 + b"]" * 5000,
]


async def test_no_input_produces_a_server_error(simulator: SimHandle) -> None:
    """Every endpoint x odd body: a status below 500, and a JSON body without a traceback."""
    headers = {**simulator.auth_headers(), "Content-Type": "application/json", "Idempotency-Key": "k"}
    failures = []
    for (method, path), body in itertools.product(ENDPOINTS, BODIES):
        async with simulator.session.request(method, simulator.root + path, data=body, headers=headers) as resp:
            text = await resp.text()
        if resp.status >= 500 or "Traceback" in text:
            failures.append((method, path, body[:40], resp.status, text[:120]))
    assert failures == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-unknown"])
async def test_compressed_bodies_are_415_envelopes(simulator: SimHandle, encoding: str) -> None:
    """Any Content-Encoding but identity is refused unread: 415, the envelope and a trace id, not a 500."""
    headers = {**simulator.auth_headers(), "Content-Type": "application/json", "Content-Encoding": encoding}
    async with simulator.session.post(
        simulator.api_url + "/flows/search", data=b"not compressed", headers=headers
    ) as r:
        body = await r.json()
    assert (r.status, body["error"]["code"]) == (415, 415)
    assert r.headers["X-Trace-Id"]
