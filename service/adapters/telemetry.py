"""OpenTelemetry tracing: one TracerProvider, set up once by the composition root, never at import time.

`setup_tracing(settings)` builds the provider (resource, sampler, OTLP/HTTP exporter when an endpoint is
configured) and returns a `TracingHandle` whose `shutdown`/`aclose` flush within a bounded time on SIGTERM.
Every span passes through `RedactingSpanProcessor` before any exporter sees it, so an attribute named like
a credential or personal data (see `service.core.redact.is_sensitive`) leaves the process as `***`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes, AttributeValue

from service import __version__
from service.core.redact import MASK, is_sensitive, redact_text, redact_url
from service.errors import ConfigError
from service.settings import SAMPLER_NAMES, Settings

# The span attribute carrying WISEflow's `X-Trace-Id` response header: search Jaeger by this tag.
X_TRACE_ID_ATTRIBUTE: Final = "wiseflow.trace_id"
# Per export request; short enough that a flush on SIGTERM fits the 30 s termination grace period.
EXPORT_TIMEOUT: Final = 5.0
# The share of accepted webhook receipts the default sampler keeps: at WISEflow's busiest (a few thousand
# grades in minutes) a receipt trace every few seconds; each sampled one costs tens of microseconds.
RECEIPT_RATIO: Final = 0.01
# The route of webhook receipts (as the tracing middleware names it) and the attribute of a recorded answer.
WEBHOOK_ROUTE: Final = "/webhooks/wiseflow"
STATUS_ATTRIBUTE: Final = "http.response.status_code"
# Attributes whose value is a URL: userinfo and sensitive query values are masked, not the whole URL.
_URL_KEYS: Final = frozenset({"url.full", "http.url", "url.query", "http.target"})


class WebhookRatioSampler(Sampler):
    """Every span sampled (a child as its parent does), except accepted webhook receipts: `ratio` of those.

    A sampler decides when a span starts, before the request's outcome is known, so a receipt span is
    sampled here only by its trace id. What keeps every failed webhook traced is the tracing middleware:
    when the receipt span was not sampled and the answer is not 2xx, it starts the span again after the
    outcome with the status among its attributes, and a span that carries its status is always sampled.
    """

    def __init__(self, ratio: float = RECEIPT_RATIO) -> None:
        self._receipts = TraceIdRatioBased(ratio)
        self._others = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """A ratio decision for a webhook receipt not yet answered; ParentBased(ALWAYS_ON) for the rest."""
        if (
            kind is SpanKind.SERVER
            and attributes is not None
            and attributes.get("http.route") == WEBHOOK_ROUTE
            and STATUS_ATTRIBUTE not in attributes
        ):
            return self._receipts.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        return self._others.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        """E.g. "WebhookRatioSampler{0.01}"."""
        return f"WebhookRatioSampler{{{self._receipts.rate}}}"

    def samples_receipt(self, trace_id: int) -> bool:
        """True when a webhook receipt not yet answered, started with `trace_id`, is sampled (the rule
        `should_sample` applies to it: `TraceIdRatioBased`'s, on the trace id's low 64 bits)."""
        return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self._receipts.bound


class DrawnTraceIds(RandomIdGenerator):
    """The SDK's random ids, except that a trace id drawn ahead (`ReceiptSampling`) is the next one given out.

    The trace id drawn ahead is per thread and taken by the first root span started after it: the span it
    was drawn for, started at once on the same thread; `next_trace_id` forgets it on the way out whatever
    happened.
    """

    def __init__(self) -> None:
        self._ahead = threading.local()

    def generate_trace_id(self) -> int:
        """The trace id drawn ahead on this thread, if any; otherwise a random one (the SDK's default)."""
        ahead: int | None = getattr(self._ahead, "trace_id", None)
        if ahead is None:
            return super().generate_trace_id()
        self._ahead.trace_id = None
        return ahead

    def random_trace_id(self) -> int:
        """A random trace id, as the SDK draws one (never the one drawn ahead)."""
        return super().generate_trace_id()

    @contextmanager
    def next_trace_id(self, trace_id: int) -> Iterator[None]:
        """Within the block, the next root span started on this thread gets `trace_id`."""
        self._ahead.trace_id = trace_id
        try:
            yield
        finally:
            self._ahead.trace_id = None


class ReceiptSampling:
    """A webhook receipt's sampling decided before any span exists, by the rule of `WebhookRatioSampler`.

    A sampler is asked only once a span is being started, and starting one that is dropped still costs its
    ids, its context and the SDK's bookkeeping: measured, about 5.6 us of the event loop a request, while an
    accepted receipt costs the whole service about 230 us. So the receipt's trace id is drawn first and the
    sampler's rule applied to it (`samples_receipt`): a receipt that would be dropped (99 in 100 by default)
    gets no span at all; one that is sampled is started with that trace id (`DrawnTraceIds`), so the
    sampler, asked again by the SDK, takes it. Which receipts are sampled, and how many, is what the sampler
    alone would decide; only the dropped spans are never made.
    """

    def __init__(self, sampler: WebhookRatioSampler, ids: DrawnTraceIds) -> None:
        self._sampler = sampler
        self._ids = ids

    def start_span(
        self, tracer: trace.Tracer, name: str, attributes: Attributes, start_time: int
    ) -> trace.Span | None:
        """The receipt's SERVER span when it is sampled; None (no span started) when it is not."""
        trace_id = self._ids.random_trace_id()
        if not self._sampler.samples_receipt(trace_id):
            return None
        with self._ids.next_trace_id(trace_id):
            return tracer.start_span(name, kind=SpanKind.SERVER, attributes=attributes, start_time=start_time)


def receipt_sampling(provider: trace.TracerProvider) -> ReceiptSampling | None:
    """The receipts' early sampling for `provider`: when its sampler is the default `WebhookRatioSampler`
    and its ids are `DrawnTraceIds` (as `setup_tracing` builds it); otherwise None (spans as usual)."""
    if not isinstance(provider, TracerProvider):
        return None
    sampler, ids = provider.sampler, provider.id_generator
    if isinstance(sampler, WebhookRatioSampler) and isinstance(ids, DrawnTraceIds):
        return ReceiptSampling(sampler, ids)
    return None


def parse_sampler(name: str, arg: str | None = None) -> Sampler:
    """The sampler named by `OTEL_TRACES_SAMPLER`, its ratio from `OTEL_TRACES_SAMPLER_ARG`.

    The standard names build the standard samplers (their ratio defaults to 1.0); `webhook_ratio`, the
    default, builds `WebhookRatioSampler` (its receipt ratio defaults to `RECEIPT_RATIO`).
    """
    key = name.strip().lower()
    if key not in SAMPLER_NAMES:
        raise ConfigError("OTEL_TRACES_SAMPLER", f"malformed: expected one of {', '.join(SAMPLER_NAMES)}")
    if key == "webhook_ratio":
        return WebhookRatioSampler(RECEIPT_RATIO if arg is None or arg.strip() == "" else _parse_ratio(arg))
    if key == "always_on":
        return ALWAYS_ON
    if key == "always_off":
        return ALWAYS_OFF
    if key == "parentbased_always_on":
        return ParentBased(ALWAYS_ON)
    if key == "parentbased_always_off":
        return ParentBased(ALWAYS_OFF)
    ratio = TraceIdRatioBased(_parse_ratio(arg))
    return ratio if key == "traceidratio" else ParentBased(ratio)


def _parse_ratio(arg: str | None) -> float:
    """The sampling ratio; 1.0 when unset, as the OpenTelemetry specification defaults it."""
    if arg is None or arg.strip() == "":
        return 1.0
    try:
        ratio = float(arg)
    except ValueError:
        raise ConfigError("OTEL_TRACES_SAMPLER_ARG", "malformed: expected a number from 0 to 1") from None
    if not 0.0 <= ratio <= 1.0:  # also rejects NaN
        raise ConfigError("OTEL_TRACES_SAMPLER_ARG", "out of range: expected 0 to 1")
    return ratio


def is_sensitive_attribute(key: str) -> bool:
    """True when a span attribute must be masked: its full key or its last dotted segment is sensitive.

    The last segment matters because semantic conventions namespace keys, e.g.
    `http.request.header.authorization` or `user.email`.
    """
    return is_sensitive(key) or is_sensitive(key.rsplit(".", 1)[-1])


def safe_attributes(attributes: Attributes) -> dict[str, AttributeValue]:
    """A copy of `attributes` fit to leave the process: sensitive keys masked, credentials in text masked."""
    return {key: _safe_value(key, value) for key, value in (attributes or {}).items()}


def _safe_value(key: str, value: AttributeValue) -> AttributeValue:
    if is_sensitive_attribute(key):
        return MASK
    if isinstance(value, str):
        return redact_url(value) if key in _URL_KEYS and "://" in value else redact_text(value)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return tuple(redact_text(str(v)) for v in value)
    return value


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """The span with its own and its events' attributes made safe (the same object when already safe)."""
    attributes = safe_attributes(span.attributes)
    events = [Event(e.name, safe_attributes(e.attributes), e.timestamp) for e in span.events]
    if attributes == dict(span.attributes or {}) and all(
        new.attributes == old.attributes for new, old in zip(events, span.events, strict=True)
    ):
        return span
    # The SDK builds ReadableSpans the same way in Span._readable_span; it has no copy-with-changes API.
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanProcessor(SpanProcessor):
    """Hands each ended span, redacted, to `inner`; every exporting processor sits behind one of these."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(redact_span(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


@dataclass(slots=True)
class TracingHandle:
    """The configured provider; `shutdown` (or `aclose` from asyncio) flushes and stops it, bounded in time."""

    provider: TracerProvider
    exporting: bool
    _closed: bool = field(default=False, init=False)

    def tracer(self, name: str) -> trace.Tracer:
        """A tracer from this provider (works whether or not the provider was made global)."""
        return self.provider.get_tracer(name, __version__)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Flush pending spans and shut down; True when done within `timeout` seconds (idempotent).

        The SDK's flush ignores its timeout and blocks on the exporter, so it runs on a daemon thread
        that we wait for at most `timeout`: a dead collector can never hold up a SIGTERM exit.
        """
        if self._closed:
            return True
        self._closed = True

        def flush_and_stop() -> None:
            self.provider.force_flush(int(timeout * 1000))
            self.provider.shutdown()

        worker = threading.Thread(target=flush_and_stop, name="otel-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        return not worker.is_alive()

    # The bound is the thread join in `shutdown`: asyncio.timeout could not stop a blocked exporter thread.
    async def aclose(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """`shutdown` without blocking the event loop (an in-process receiver may need the loop)."""
        return await asyncio.to_thread(self.shutdown, timeout)


def setup_tracing(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
    set_global: bool = True,
) -> TracingHandle:
    """Configure tracing from `settings`: resource, sampler, and where spans go.

    With `exporter` (tests), spans are handed to it synchronously; otherwise, when `settings.otel_endpoint`
    is set, they are batched to the OTLP/HTTP exporter at `{endpoint}/v1/traces`; with neither, spans
    still work in-process (trace ids in logs, `X-Trace-Id` tags) but go nowhere. `env` supplies
    `OTEL_TRACES_SAMPLER_ARG` (default: the process environment). `set_global=False` leaves the global
    provider alone, so tests can build several.
    """
    environ = os.environ if env is None else env
    sampler = parse_sampler(settings.otel_sampler, environ.get("OTEL_TRACES_SAMPLER_ARG"))
    resource = Resource.create({"service.name": settings.otel_service_name, "service.version": __version__})
    # No atexit hook: the handle's owner shuts it down with a bound, an atexit flush has none.
    provider = TracerProvider(
        sampler=sampler, resource=resource, shutdown_on_exit=False, id_generator=DrawnTraceIds()
    )
    if exporter is not None:
        provider.add_span_processor(RedactingSpanProcessor(SimpleSpanProcessor(exporter)))
    elif settings.otel_endpoint is not None:
        otlp = OTLPSpanExporter(endpoint=f"{settings.otel_endpoint}/v1/traces", timeout=EXPORT_TIMEOUT)
        provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(otlp)))
    if set_global:
        trace.set_tracer_provider(provider)
    exporting = exporter is not None or settings.otel_endpoint is not None
    return TracingHandle(provider=provider, exporting=exporting)


# Seconds a command waits for its spans to leave before it exits (the run command uses the same bound).
SPAN_FLUSH_TIMEOUT: Final = 5.0


@contextmanager
def command_tracing(
    settings: Settings, env: Mapping[str, str] | None = None, *, root: str | None = None
) -> Iterator[TracingHandle]:
    """Tracing for one command that calls WISEflow: set up from the OTEL_* settings, flushed on the way out.

    With `root`, the command is one trace: a span of that name is current for the block (`asyncio.run`
    inside it copies the context, so every API attempt is its child). The flush is bounded by
    `SPAN_FLUSH_TIMEOUT`: a collector that is down never holds up the exit.
    """
    # A process sets the global provider once (OpenTelemetry refuses, with a warning, to replace it): a
    # second command run in the same process (tests, an embedding) keeps its own provider instead.
    first = isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    handle = setup_tracing(settings, env=env, set_global=first)
    try:
        if root is None:
            yield handle
        else:
            with _command_span(handle, root):
                yield handle
    finally:
        handle.shutdown(SPAN_FLUSH_TIMEOUT)


@contextmanager
def _command_span(handle: TracingHandle, name: str) -> Iterator[None]:
    """The command's root span; an exception marks it failed with its type only (messages may name people)."""
    tracer = handle.tracer("service.commands")
    with tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False) as span:
        try:
            yield
        except BaseException as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            raise
