"""The HTTP server of `run`: aiohttp's, with bounds on what a stranger who can reach the port can hold.

- headers: at most `MAX_HEADERS` of `MAX_FIELD_SIZE` bytes, a request line of `MAX_LINE_SIZE` (aiohttp's
  defaults, 128 of 8190, let one connection's unfinished headers hold about 1 MiB); over -> 400, closed;
- time: a connection must finish its request's headers within `HEADER_TIMEOUT` seconds of opening (or of
  its last answer): aiohttp's keep-alive timer closes a connection still waiting for a whole request, so
  idle keep-alive connections also close after it (a proxy in front simply opens another);
- connections: at most `MAX_CONNECTIONS` open; one more and the oldest open connection is closed to make
  room (a slow sender is the oldest; a webhook that sends at once is answered within milliseconds), each
  one counted and logged at most once per 10 s;
- bodies: bounded per request (`SYNC_WEBHOOK_MAX_BODY`) and in total (`read_budget`) by the receiver; a
  body refused unread is not drained (no lingering): its connection closes after the answer.

Worst case held by strangers: 256 connections x (32 x 4 KiB of headers) plus 8 MiB of bodies, about
40 MiB, within the 256 Mi pod limit (see docs/performance.md for the measured figure).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from service.adapters.read_budget import Notice

MAX_CONNECTIONS: Final = 256
HEADER_TIMEOUT: Final = 5.0
MAX_HEADERS: Final = 32
MAX_FIELD_SIZE: Final = 4096
MAX_LINE_SIZE: Final = 4096

log = logging.getLogger("service.http")


class Connections:
    """The open connections, oldest first; at the cap a new one closes the oldest (`on_shed` counts it)."""

    def __init__(self, cap: int = MAX_CONNECTIONS, on_shed: Callable[[], None] | None = None) -> None:
        self.cap = cap
        self.shed = 0
        self._open: dict[_Guarded, None] = {}
        self._on_shed = on_shed
        self._notice = Notice()

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, connection: _Guarded) -> None:
        while len(self._open) >= self.cap:
            oldest = next(iter(self._open))
            self.closed(oldest)
            oldest.close()
            self.shed += 1
            if self._on_shed is not None:
                self._on_shed()
            since = self._notice.count(asyncio.get_running_loop().time())
            if since is not None:
                log.warning(
                    "connections shed: the cap of open connections was reached, the oldest were closed",
                    extra={"event": "http.connections_shed", "count": since, "cap": self.cap},
                )
        self._open[connection] = None

    def closed(self, connection: _Guarded) -> None:
        self._open.pop(connection, None)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, entered in `Connections` while open (every call forwarded)."""

    __slots__ = ("_connections", "_inner", "_transport")

    def __init__(self, inner: RequestHandler, connections: Connections) -> None:
        self._inner = inner
        self._connections = connections
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._connections.opened(self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> None:
        self._inner.eof_received()  # aiohttp's returns None: the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.closed(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

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
            lambda: _Guarded(server(), self._connections), self._host, self._port, reuse_address=True
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
        # A body refused unread (413, 408, busy) is not drained: aiohttp would otherwise go on reading and
        # discarding it for up to 10 s, the connection held all that time; its connection closes instead.
        lingering_time=0,
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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
