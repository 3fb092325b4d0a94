"""The spans of the service's units of work, and span events, for code that should not know OpenTelemetry.

A sync run is one trace: `sync.run` (INTERNAL) -> `sync.discovery`, `sync.events`, `sync.refresh_flow`
-> each WISEflow attempt (CLIENT, made by the transport). A webhook's receipt is the SERVER span of its
request; its processing is a CONSUMER span (`webhook.process`) linked to that receipt, whose
`traceparent` is stored with the event (`current_traceparent`), so the link survives a restart between
receipt and processing. An SIS delivery is a CLIENT span whose context goes out as `traceparent`.

Every span comes from the one tracer provider given to the composition root (`build_app` /
`open_service`, or else the global one that `setup_tracing` installs): it hands each component that opens
spans a `Tracer` from that provider, and `unit_span` takes it as its first argument. A component built
without one (a unit test) gets `NO_TRACER`: no span is recorded, and the parent's context still carries.

    with unit_span(tracer, "sync.run") as span:
        span.set_attribute("sync.run_id", 12)
        add_event("rate_limiter.wait", seconds=0.25)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

# For components built without a tracer: records nothing, and hands on its parent's context.
NO_TRACER: Final[trace.Tracer] = trace.NoOpTracer()
# The instrumentation scope of the service's own spans (the WISEflow client's attempts have their own).
SCOPE: Final = "service"
# Reads stored receipts back (only the W3C format, whatever propagators the process has configured).
_PROPAGATOR: Final = TraceContextTextMapPropagator()


@contextmanager
def unit_span(
    tracer: trace.Tracer,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    links: Sequence[Link] = (),
) -> Iterator[Span]:
    """A span around one unit of work, current while it runs; an exception marks it as an error.

    The error is the exception's type only: the SDK's own `record_exception` formats the whole traceback
    (milliseconds a time, for a refresh that fails on every pass of a long outage) and writes its message.
    """
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            if span.is_recording():
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def add_event(name: str, **attributes: AttributeValue) -> None:
    """An event on the current span (a limiter wait, a pause, a breaker transition); nothing without one."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)


def mark_error(reason: str) -> None:
    """Mark the current span failed with a short, safe reason (never a message that may name people)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, reason))


def current_traceparent() -> str | None:
    """The current span's context as a W3C `traceparent` value, or None when no span is recording.

    Formatted here rather than through the propagator's `inject`: it runs once per webhook request, and the
    format is fixed by the W3C Trace Context specification (version 00).
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def receipt_links(traceparents: Iterable[str | None]) -> list[Link]:
    """Links to the spans named by stored `traceparent` values (webhook receipts); unreadable ones skipped."""
    links = []
    for value in dict.fromkeys(t for t in traceparents if t):  # each receipt once, in order
        context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": value})).get_span_context()
        if context.is_valid:
            links.append(Link(context))
    return links
