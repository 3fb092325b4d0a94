"""Fuzzing the live endpoint: random headers, bodies and encodings never get a 5xx, never store unverified data.

The receiver runs on a real aiohttp server (its own thread and loop) over a real SQLite file; Hypothesis
drives a plain HTTP client (and a raw socket for malformed requests) against it.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.adapters.store import Store
from service.adapters.store.inbox import Inbox
from service.adapters.webhook_http import WEBHOOK_PATH, WebhookReceiver, add_webhook_routes
from service.core.clock import SystemClock
from service.core.signatures import WebhookVerifier, sign_wiseflow

SECRET = "fuzz-webhook-secret-0123"


class ServerThread:
    """The webhook endpoint on 127.0.0.1 in a background event loop."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.port = self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> int:
        self.store = await Store.open(self.db)
        receiver = WebhookReceiver(WebhookVerifier("wiseflow", (SECRET,)), Inbox(self.store), SystemClock())
        app = web.Application()
        add_webhook_routes(app, receiver)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return int(self.runner.addresses[0][1])

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.store.close()
        # Handlers of connections the raw-socket client left half-open: end them before the loop closes.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stored(self) -> list[tuple[int, bytes]]:
        """Every stored (sequence, body)."""

        async def rows() -> list[tuple[int, bytes]]:
            async with self.store.db.execute("SELECT sequence, body FROM inbox") as cur:
                return [(int(r[0]), bytes(r[1])) for r in await cur.fetchall()]

        result: list[tuple[int, bytes]] = self._call(rows())
        return result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def event_docs(draw: st.DrawFn) -> bytes:
    """Event-like JSON: the right keys with values of any type, sometimes entirely right."""
    now = int(time.time())
    good = {
        "id": draw(st.uuids()).hex,
        "sequence": draw(st.integers(0, 10**6)),
        "event": draw(st.sampled_from(["FINAL_GRADE", "ASSESSMENT", "FLOW_STATE_UPDATED", "NEW_THING"])),
        "timestamp": now,
        "data": {"flowId": draw(st.integers(0, 100)), "participantId": 1},
    }
    for key in draw(st.lists(st.sampled_from(sorted(good)), max_size=2)):
        good[key] = draw(json_values)
    # stdlib json: it writes huge integers and Infinity, which the receiver must refuse cleanly.
    return json.dumps(good).encode()


bodies = st.one_of(st.binary(max_size=300), event_docs(), st.builds(lambda b: gzip.compress(b), event_docs()))
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str], bool]:
    """A body, headers, and whether the signature header is the body's true signature."""
    body = draw(bodies)
    headers: dict[str, str] = {}
    signature = draw(st.sampled_from(["valid", "random", "none", "other-secret"]))
    if signature == "valid":
        headers["X-Wiseflow-Signature"] = sign_wiseflow(SECRET, body)
    elif signature == "other-secret":
        headers["X-Wiseflow-Signature"] = sign_wiseflow("not-the-secret", body)
    elif signature == "random":
        headers["X-Wiseflow-Signature"] = draw(header_text)
    if draw(st.booleans()):
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br", "identity", "x-nope"]))
    if draw(st.booleans()):
        headers["Content-Type"] = draw(header_text)
    if draw(st.booleans()):
        headers[draw(st.sampled_from(["X-Extra", "webhook-id", "webhook-timestamp"]))] = draw(header_text)
    return body, headers, signature == "valid"


def _post(port: int, body: bytes, headers: dict[str, str], chunked: bool) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        try:
            if chunked:
                conn.request("POST", WEBHOOK_PATH, body=iter([body]), headers=headers, encode_chunked=True)
            else:
                conn.request("POST", WEBHOOK_PATH, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The server refused the request early (e.g. an encoding aiohttp cannot decode) and closed while
            # we were still sending the last chunk: its answer is already in our receive buffer, read it.
            pass
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_fuzzed_requests_never_get_a_5xx_nor_store_unverified_events(tmp_path: Path) -> None:
    """Random bodies, signatures, encodings and framing: every answer < 500, only truly signed bodies stored."""
    signed_bodies: set[bytes] = set()
    known_good = json.dumps(
        {
            "id": "d",
            "sequence": 10**7,
            "event": "FINAL_GRADE",
            "timestamp": int(time.time()),
            "data": {"flowId": 1},
        }
    ).encode()
    with ServerThread(tmp_path / "fuzz.sqlite3") as server:

        @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(request=requests(), chunked=st.booleans())
        @example(
            request=(known_good, {"X-Wiseflow-Signature": sign_wiseflow(SECRET, known_good)}, True),
            chunked=True,
        )
        def check(request: tuple[bytes, dict[str, str], bool], chunked: bool) -> None:
            body, headers, valid = request
            status = _post(server.port, body, headers, chunked)
            assert status < 500
            if valid and headers.get("Content-Encoding", "identity") == "identity":
                signed_bodies.add(body)
            else:
                assert status != 200

        check()
        stored = server.stored()
        assert all(body in signed_bodies for _, body in stored)
        assert (10**7, known_good) in stored  # the valid path was exercised, chunked


def test_malformed_http_never_gets_a_5xx(tmp_path: Path) -> None:
    """Broken framing (bad chunk sizes, lying Content-Length, junk) is answered below 500 or dropped."""
    with ServerThread(tmp_path / "raw.sqlite3") as server:

        @settings(max_examples=60, deadline=None)
        @given(junk=st.binary(max_size=200), length=st.integers(0, 10**9))
        def check(junk: bytes, length: int) -> None:
            for request in (
                b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + junk,
                b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + str(length).encode() + b"\r\n\r\n" + junk,
                junk,
            ):  # fmt: skip
                answer = _raw(server.port, request)
                status_line = answer.split(b"\r\n", 1)[0]
                assert not status_line.startswith(b"HTTP/1.1 5"), status_line

        check()
        assert server.stored() == []
