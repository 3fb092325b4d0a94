"""The spans of the service's units of work, and span events, for code that should not know OpenTelemetry.

A sync run is one trace: `sync.run` (INTERNAL) -> `sync.discovery`, `sync.events`, `sync.refresh_flow`
-> each WISEflow attempt (CLIENT, made by the transport). A webhook's receipt is the SERVER span of its
request; its processing is a CONSUMER span (`webhook.process`) linked to that receipt, which
`ReceiptLinks` remembers by the event's sequence number (in memory: after a restart an event is
processed without the link). An SIS delivery is a CLIENT span whose context goes out as `traceparent`.

Spans come from the global tracer provider, which `setup_tracing` installs for every command that talks
to WISEflow; without it they are no-ops that still carry their parent's context.

    with unit_span("sync.run") as span:
        span.set_attribute("sync.run_id", 12)
        add_event("rate_limiter.wait", seconds=0.25)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from service import __version__

_tracer: Final = trace.get_tracer("service", __version__)
# Receipts remembered for linking: a backlog larger than this is processed without links to its oldest.
RECEIPTS_KEPT: Final = 10_000


@contextmanager
def unit_span(
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
    with _tracer.start_as_current_span(
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


def inject_traceparent(headers: MutableMapping[str, str]) -> None:
    """Add the current span's W3C `traceparent` (and `tracestate`) to outgoing `headers`."""
    inject(headers)


class ReceiptLinks:
    """The receipt span of each stored webhook event, by sequence, for its processing span to link to.

    `remember` runs on the webhook path: a context-variable read and a dict insert, no lock (the event
    loop is the only writer), bounded by evicting the oldest.
    """

    def __init__(self, kept: int = RECEIPTS_KEPT) -> None:
        self._kept = kept
        self._contexts: dict[int, SpanContext] = {}

    def remember(self, sequence: int) -> None:
        """Note the current span (the request's SERVER span) as the receipt of event `sequence`."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return
        contexts = self._contexts
        contexts[sequence] = context
        if len(contexts) > self._kept:
            del contexts[next(iter(contexts))]

    def links(self, sequences: Sequence[int]) -> list[Link]:
        """Links to the receipts of `sequences` that are still remembered (kept for a retry's span too)."""
        found = (self._contexts.get(s) for s in sequences)
        return [Link(context) for context in found if context is not None]
