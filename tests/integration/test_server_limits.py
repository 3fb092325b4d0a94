"""What strangers who can reach the port can hold, over real sockets: headers, time, connections, bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from service.adapters.http_server import MAX_FIELD_SIZE, Connections, GuardedSite, runner_for
from service.adapters.webhook_http import WEBHOOK_PATH, add_webhook_routes
from tests.integration.webhook_helpers import Harness, event_body, running_receiver, signed
from tests.waiting import wait_until


@dataclass
class Guarded:
    """The receiver of `harness` behind the guarded server, and where it listens."""

    harness: Harness
    connections: Connections
    port: int

    async def post_signed(self, sequence: int) -> tuple[int, str]:
        """A correctly signed webhook over a fresh connection: its status and body."""
        body = event_body(sequence=sequence)
        url = f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=signed(body)) as r:
            return r.status, await r.text()


@asynccontextmanager
async def guarded(
    tmp_path: Path, cap: int = 256, per_peer: int = 64, header_timeout: float = 5.0, **limits: int
) -> AsyncIterator[Guarded]:
    """The webhook receiver on 127.0.0.1 behind `run`'s server limits (connection caps `cap`, `per_peer`)."""
    async with running_receiver(tmp_path, **limits) as harness:
        app = web.Application()
        add_webhook_routes(app, harness.receiver)
        runner = runner_for(app, shutdown_timeout=5.0, header_timeout=header_timeout)
        await runner.setup()
        connections = Connections(cap, per_peer)
        try:
            await GuardedSite(runner, "127.0.0.1", 0, connections).start()
            yield Guarded(harness, connections, runner.addresses[0][1])
        finally:
            await runner.cleanup()


async def _slow_body(
    port: int, declared: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from `source` that sends whole headers announcing `declared` body bytes, then one byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Wiseflow-Signature: x\r\nContent-Length: {declared}\r\n\r\n{{"
    )
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def test_two_hundred_slow_senders_cannot_shut_out_a_signed_webhook(tmp_path: Path) -> None:
    """200 connections holding an unfinished body each (the old bound was 128 reads): a signed one gets 200."""
    async with guarded(tmp_path, per_peer=256) as g:
        slow = [await _slow_body(g.port, 500) for _ in range(200)]
        await wait_until(lambda: g.harness.receiver.unverified == 200, what="200 body reads waiting")
        assert await g.post_signed(1) == (200, '{"status":"accepted"}')
        assert g.harness.figures.rejected["busy"] == 0
        for _, writer in slow:
            writer.close()


async def test_when_bodies_on_their_way_fill_the_budget_the_oldest_give_way(tmp_path: Path) -> None:
    """Budget of 4 bodies: a 5th and 6th slow sender cut off the two oldest (503 busy, Retry-After)."""
    async with guarded(tmp_path, max_unverified_bytes=4 * 1000) as g:
        slow = [await _slow_body(g.port, 1000) for _ in range(4)]
        await wait_until(lambda: g.harness.receiver.unverified == 4, what="4 body reads waiting")
        slow += [await _slow_body(g.port, 1000) for _ in range(2)]
        answers = [await reader.read() for reader, _ in slow[:2]]  # the server closes them after its answer
        assert all(a.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in a for a in answers)
        assert g.harness.receiver.unverified == 4
        assert g.harness.figures.rejected["busy"] == 2
        assert await g.post_signed(2) == (200, '{"status":"accepted"}')
        for _, writer in slow:
            writer.close()


async def test_huge_unfinished_headers_are_refused(tmp_path: Path) -> None:
    """A header field over the limit, or more than 32 headers, is answered 400 and the connection closed."""
    async with guarded(tmp_path) as g:
        for head in (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * (MAX_FIELD_SIZE + 10)}\r\n",
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\n"
            + "".join(f"X-{n}: {'a' * 100}\r\n" for n in range(40)),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
            writer.write(head.encode())  # never finished: no blank line
            answer = await asyncio.wait_for(reader.read(), timeout=30)
            assert answer.split(b" ", 2)[1] == b"400", answer[:80]
            writer.close()
        assert await g.post_signed(3) == (200, '{"status":"accepted"}')


async def test_a_connection_that_does_not_finish_its_headers_in_time_is_closed(tmp_path: Path) -> None:
    """With a header timeout of 0.3 s, a connection that sent half a request is closed; a signed one is fine."""
    async with guarded(tmp_path, header_timeout=0.3) as g:
        reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
        writer.write(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\n".encode())
        assert await asyncio.wait_for(reader.read(), timeout=30) == b""  # closed by the server, unanswered
        writer.close()
        assert await g.post_signed(4) == (200, '{"status":"accepted"}')


async def test_at_the_connection_cap_the_oldest_connection_makes_room(tmp_path: Path) -> None:
    """Cap 4: four idle connections, then a signed webhook: it gets 200, the oldest idle one is closed."""
    async with guarded(tmp_path, cap=4) as g:
        idle = [await asyncio.open_connection("127.0.0.1", g.port) for _ in range(4)]
        await wait_until(lambda: len(g.connections) == 4, what="four open connections")
        assert await g.post_signed(5) == (200, '{"status":"accepted"}')
        assert await asyncio.wait_for(idle[0][0].read(), timeout=30) == b""
        assert g.connections.shed >= 1
        for _, writer in idle:
            writer.close()


async def test_a_sender_that_keeps_reconnecting_only_displaces_its_own_connections(tmp_path: Path) -> None:
    """Per-peer cap 8: 30 slow senders from 127.0.0.2 hold 8 slots at most; 127.0.0.1's webhook gets 200."""
    async with guarded(tmp_path, per_peer=8) as g:
        bystander = await asyncio.open_connection("127.0.0.1", g.port)  # an idle keep-alive of someone else
        slow = [await _slow_body(g.port, 500, source="127.0.0.2") for _ in range(30)]
        await wait_until(lambda: g.connections.shed == 22, what="22 of the slow senders' connections shed")
        assert len(g.connections) == 9
        assert await g.post_signed(6) == (200, '{"status":"accepted"}')
        bystander[1].write(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")  # still open: answered
        assert (await asyncio.wait_for(bystander[0].readline(), timeout=30)).startswith(b"HTTP/1.1 404")
        bystander[1].close()
        for _, writer in slow:
            writer.close()
