"""The SIS sink over HTTP: `POST {SYNC_SINK_URL}` with one grade version and its `Idempotency-Key`.

Implements `core.ports.Sink`. 2xx means delivered; anything else (or no answer) raises `SinkError`,
and the outbox deliverer retries later with the same key, so the SIS can drop a repeat.
"""

from __future__ import annotations

import aiohttp

from service.core.ports import Json
from service.errors import SinkError


class HttpSink:
    """Delivers grade versions to the SIS; the session is owned by the caller (one per process)."""

    def __init__(
        self, url: str, session: aiohttp.ClientSession, *, timeout: float = 10.0, client_name: str = ""
    ) -> None:
        self._url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._client_name = client_name or "wiseflow-sync"

    async def deliver(self, record: Json, idempotency_key: str) -> None:
        """POST the record; return on 2xx, raise `SinkError` otherwise (never echoing the body)."""
        headers = {"Idempotency-Key": idempotency_key, "User-Agent": self._client_name}
        try:
            async with self._session.post(
                self._url, json=record, headers=headers, timeout=self._timeout
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise SinkError("sink refused the delivery", status=response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkError(f"sink unreachable: {type(exc).__name__}") from exc
