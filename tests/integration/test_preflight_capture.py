"""The preflight's capture listener: only the request marked as its own is kept; the rest get 503."""

from __future__ import annotations

import socket

import aiohttp

from service.preflight.webhooks import DeliveryCapture


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_only_the_marked_post_is_captured_and_acknowledged() -> None:
    """Unmarked, wrongly marked and non-POST requests: 503 with Retry-After, never captured."""
    port = free_port()
    capture = DeliveryCapture("127.0.0.1", port, lambda: 1_700_000_000.0, "a" * 32)
    await capture.start()
    base = f"http://127.0.0.1:{port}/webhooks/wiseflow"
    try:
        async with aiohttp.ClientSession() as session:
            strangers = [
                ("POST", base),
                ("POST", base + "?preflight=" + "b" * 32),
                ("POST", base + "?preflight="),
                ("PUT", capture.url(base)),
                ("GET", capture.url(base)),
            ]
            for method, url in strangers:
                async with session.request(method, url, data=b"{}") as reply:
                    assert (reply.status, reply.headers["Retry-After"]) == (503, "120"), (method, url)
            async with session.post(capture.url(base + "?x=1"), data=b'{"test": true}') as reply:
                assert reply.status == 200
    finally:
        await capture.stop()
    assert [(d.path, d.body) for d in capture.deliveries] == [("/webhooks/wiseflow", b'{"test": true}')]
    assert capture.refused == len(strangers)
