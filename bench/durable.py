"""The limit: the least a durable webhook receiver must do, as one small aiohttp app (bench only).

    python bench/durable.py --port PORT --database PATH [--otlp URL]

Per request: read the body, verify its signature with the service's own verifier, parse it with orjson,
queue one row and answer 200 only once a group commit holding it has returned: one writer thread with its
own sqlite3 connection (WAL, synchronous=FULL), batches of up to 512 rows, one wake-up of each side per
batch. One SERVER span per request from a TracerProvider under the service's sampler (its default, or
OTEL_TRACES_SAMPLER and _ARG as the service reads them), with the route attributes the service's middleware
sets, sampled spans batched to the OTLP/HTTP endpoint `--otlp` as the service's are. Nothing else: no
dedupe table, no worker, no metrics, no middleware. `bench/ingest.py` runs it beside the service as the
yardstick; nothing in `service/` imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import sqlite3
import threading
import time

import orjson
from aiohttp import web
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from service.adapters.telemetry import parse_sampler
from service.core.signatures import WebhookVerifier
from service.errors import InvalidSignature
from service.settings import load_settings

MAX_BATCH = 512
SECRET = "bench-webhook-secret"  # noqa: S105 - the benchmark's fixed secret (bench/ingest.py)
_ACCEPTED = b'{"status":"accepted"}'
# The receipt span's attributes as the service's tracing middleware sets them (the sampler reads them).
_ROUTE = {"http.request.method": "POST", "http.route": "/webhooks/wiseflow"}
Row = tuple[int, str, bytes, float]


class GroupCommit:
    """Rows queued on the event loop, committed by one thread, a batch per commit, one wake-up each way."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.waiting: list[tuple[Row, asyncio.Future[None]]] = []
        self.busy = False  # the writer holds a batch
        self.batches: queue.SimpleQueue[list[tuple[Row, asyncio.Future[None]]]] = queue.SimpleQueue()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS events (sequence INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL, "
            "body BLOB NOT NULL, received_at REAL NOT NULL)"
        )
        threading.Thread(target=self._writer, daemon=True).start()

    def commit(self, row: Row) -> asyncio.Future[None]:
        """A future that is done once `row` is durable."""
        future = self.loop.create_future()
        self.waiting.append((row, future))
        if not self.busy:
            self._hand_over()
        return future

    def _hand_over(self) -> None:
        self.busy = True
        batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
        self.batches.put(batch)

    def _writer(self) -> None:
        while True:
            batch = self.batches.get()
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", [r for r, _ in batch])
                self.db.execute("COMMIT")
                failure = None
            except sqlite3.Error as exc:  # nobody is answered 200 for a row that is not durable
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                failure = exc
            self.loop.call_soon_threadsafe(self._committed, batch, failure)

    def _committed(self, batch: list[tuple[Row, asyncio.Future[None]]], failure: Exception | None) -> None:
        for _, future in batch:
            if not future.done():
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(failure)
        self.busy = False
        if self.waiting:
            self._hand_over()


def make_app(database: str, otlp: str | None) -> web.Application:
    """The receiver's app: POST /webhooks/wiseflow."""
    sampling = {k: v for k, v in os.environ.items() if k in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")}
    settings = load_settings({"WISEFLOW_WEBHOOK_SECRET": SECRET, **sampling})
    verifier = WebhookVerifier(settings.webhook_scheme, (SECRET,), tolerance=settings.webhook_tolerance)
    provider = TracerProvider(
        sampler=parse_sampler(settings.otel_sampler, sampling.get("OTEL_TRACES_SAMPLER_ARG"))
    )
    if otlp is not None:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp}/v1/traces")))
    tracer = provider.get_tracer("bench.durable")
    state: dict[str, GroupCommit] = {}

    async def receive(request: web.Request) -> web.Response:
        with tracer.start_as_current_span(
            "POST /webhooks/wiseflow", kind=trace.SpanKind.SERVER, attributes=_ROUTE
        ):
            body = await request.read()
            now = time.time()
            try:
                verifier.verify(request.headers, body, now)
                doc = orjson.loads(body)
                verifier.check_body_timestamp(doc["timestamp"], now)
                row = (int(doc["sequence"]), str(doc["id"]), body, now)
            except InvalidSignature:
                return web.json_response({"error": "bad_signature"}, status=401)
            except (ValueError, KeyError, TypeError):
                return web.json_response({"error": "malformed"}, status=400)
            try:
                await state["commit"].commit(row)
            except sqlite3.Error:
                return web.json_response({"error": "unavailable"}, status=503)
            return web.Response(body=_ACCEPTED, content_type="application/json")

    async def open_writer(_: web.Application) -> None:
        state["commit"] = GroupCommit(database)

    app = web.Application()
    app.on_startup.append(open_writer)
    app.router.add_post("/webhooks/wiseflow", receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--otlp", help="an OTLP/HTTP endpoint for the sampled spans")
    args = parser.parse_args()
    web.run_app(
        make_app(args.database, args.otlp), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
