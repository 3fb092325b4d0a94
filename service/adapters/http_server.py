"""The HTTP server of `run`: aiohttp's, with bounds on what a stranger who can reach the port can hold.

- headers: at most `MAX_HEADERS` of `MAX_FIELD_SIZE` bytes, a request line of `MAX_LINE_SIZE` (aiohttp's
  defaults, 128 of 8190, let one connection's unfinished headers hold about 1 MiB); over -> 400, closed;
- time: a connection must finish its request's headers within `HEADER_TIMEOUT` seconds of opening (or of
  its last answer): aiohttp's keep-alive timer closes a connection still waiting for a whole request, so
  idle keep-alive connections also close after it (a proxy in front simply opens another);
- connections: at most `MAX_PER_PEER` open from one address and `MAX_CONNECTIONS` in all; one more and
  the oldest connection of that address (at the total cap: of the address holding most) is closed to make
  room, an idle one (no request in progress) before a busy one, so a sender who keeps reconnecting only
  ever displaces its own connections, and a webhook, which sends at once and is answered within
  milliseconds, is never the oldest; each one counted and logged at most once per 10 s. Behind a proxy
  every connection comes from the proxy: 128 at once is four times the concurrency WISEflow was measured
  to use, and above the 100 connections of an aiohttp client's default pool;
- bodies: bounded per request (`SYNC_WEBHOOK_MAX_BODY`) and in total (`read_budget`) by the receiver; a
  body refused unread is drained for at most `LINGER` seconds after the answer, then its connection closes.

Worst case held by strangers: 256 connections x (32 x 4 KiB of headers) plus 8 MiB of bodies, about
40 MiB, within the 256 Mi pod limit (see docs/performance.md for the measured figure).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Final, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from service.adapters.read_budget import Notice

MAX_CONNECTIONS: Final = 256
MAX_PER_PEER: Final = 128
HEADER_TIMEOUT: Final = 5.0
MAX_HEADERS: Final = 32
MAX_FIELD_SIZE: Final = 4096
MAX_LINE_SIZE: Final = 4096
LINGER: Final = 1.0

log = logging.getLogger("service.http")


class Connections:
    """The open connections by peer address, oldest first; at a cap a new one closes an old one."""

    def __init__(
        self,
        cap: int = MAX_CONNECTIONS,
        per_peer: int = MAX_PER_PEER,
        on_shed: Callable[[], None] | None = None,
    ) -> None:
        self.cap = cap
        self.per_peer = per_peer
        self.shed = 0
        self._count = 0
        self._by_peer: dict[object, dict[_Guarded, None]] = {}
        self._on_shed = on_shed
        self._notice = Notice()

    def __len__(self) -> int:
        return self._count

    def opened(self, connection: _Guarded) -> None:
        """Enter `connection`, first closing the oldest of its peer's (or of the largest peer's) at a cap."""
        mine = self._by_peer.setdefault(connection.peer, {})
        if len(mine) >= self.per_peer:
            self._shed(_oldest(mine))
        elif self._count >= self.cap:
            largest: dict[_Guarded, None] = max(self._by_peer.values(), key=len)
            self._shed(_oldest(largest))
        mine[connection] = None
        self._count += 1

    def closed(self, connection: _Guarded) -> None:
        """Forget `connection` (idempotent)."""
        mine = self._by_peer.get(connection.peer)
        if mine is not None and connection in mine:
            del mine[connection]
            self._count -= 1
            if not mine:
                del self._by_peer[connection.peer]

    def _shed(self, oldest: _Guarded) -> None:
        self.closed(oldest)
        oldest.close()
        self.shed += 1
        if self._on_shed is not None:
            self._on_shed()
        since = self._notice.count(asyncio.get_running_loop().time())
        if since is not None:
            log.warning(
                "connections shed: a cap of open connections was reached, the oldest were closed",
                extra={
                    "event": "http.connections_shed",
                    "count": since,
                    "cap": self.cap,
                    "per_peer": self.per_peer,
                },
            )


def _oldest(connections: dict[_Guarded, None]) -> _Guarded:
    """The oldest of `connections` with no request in progress, else the oldest: an idle keep-alive
    connection costs its peer nothing to lose, a request cut off mid-answer costs a redelivery."""
    return next((c for c in connections if not c.busy()), next(iter(connections)))


class _Guarded:
    """aiohttp's protocol for one connection, entered in `Connections` while it is open.

    Only opening and closing are its own: every other call of the transport goes straight to aiohttp's
    handler, whose bound methods are this object's attributes (nothing stands in between).
    """

    def __init__(self, inner: RequestHandler, connections: Connections) -> None:
        self._inner = inner
        self._connections = connections
        self._transport: asyncio.BaseTransport | None = None
        self.peer: object = None  # the remote address (not the port): whom the per-peer cap counts
        self.data_received = inner.data_received
        self.eof_received = inner.eof_received
        self.pause_writing = inner.pause_writing
        self.resume_writing = inner.resume_writing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Enter the connection (which may close an older one at a cap), then hand it to aiohttp."""
        self._transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else peername
        self._connections.opened(self)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection, then tell aiohttp."""
        self._connections.closed(self)
        self._inner.connection_lost(exc)

    def busy(self) -> bool:
        """True while aiohttp handles a request on this connection (its own flag; False if it has none)."""
        return bool(getattr(self._inner, "_request_in_progress", False))

    def close(self) -> None:
        """Close the connection (what it had not been answered is dropped)."""
        if self._transport is not None:
            self._transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through `Connections`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, connections: Connections) -> None:
        super().__init__(runner)
        self._host, self._port, self._connections = host, port, connections

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")  # aiohttp's own sites refuse the same way
        self._server = await asyncio.get_running_loop().create_server(
            lambda: cast(asyncio.Protocol, _Guarded(server(), self._connections)),
            self._host,
            self._port,
            reuse_address=True,
        )


def runner_for(
    app: web.Application, shutdown_timeout: float, header_timeout: float = HEADER_TIMEOUT
) -> web.AppRunner:
    """aiohttp's runner for `app` with the header limits and timeout above (no access log)."""
    return web.AppRunner(
        app,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        keepalive_timeout=header_timeout,
        max_headers=MAX_HEADERS,
        max_field_size=MAX_FIELD_SIZE,
        max_line_size=MAX_LINE_SIZE,
        # A body refused unread (413, 408, busy) is drained for at most 1 s, so that a sender still sending
        # it can read its answer (closing at once makes its write fail first), then the connection closes:
        # aiohttp's default went on reading and discarding for 10 s, the connection held all that time.
        lingering_time=LINGER,
        # Webhook signatures cover the raw bytes: never inflate a body before the receiver sees it (it
        # refuses encoded bodies with 415), and never let aiohttp answer an unknown encoding itself.
        auto_decompress=False,
    )


async def serve(
    app: web.Application, host: str, port: int, shutdown_timeout: float, connections: Connections
) -> None:
    """Serve `app` until SIGINT or SIGTERM, then stop accepting, drain requests and run its cleanup."""
    runner = runner_for(app, shutdown_timeout)
    await runner.setup()
    try:
        await GuardedSite(runner, host, port, connections).start()
        await stop_signal()
    finally:
        await runner.cleanup()


async def stop_signal() -> None:
    """Return once SIGINT or SIGTERM arrives (the servers' cue to stop accepting and drain)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
