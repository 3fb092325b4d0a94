"""The receipt of a webhook event as stored (`traceparent`) and read back as a span link."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from service.adapters.spans import current_traceparent, receipt_links


def test_the_current_span_round_trips_through_its_stored_traceparent() -> None:
    """What the receiver stores is what the worker links to: the same trace and span ids."""
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /webhooks/wiseflow") as span:
        stored = current_traceparent()
    context = span.get_span_context()
    assert stored == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert context.trace_flags.sampled
    [link] = receipt_links([stored])
    assert (link.context.trace_id, link.context.span_id) == (context.trace_id, context.span_id)


def test_nothing_is_stored_without_a_sampled_span() -> None:
    """No span, or one the sampler dropped: no receipt (a link to a span never exported would dangle)."""
    assert current_traceparent() is None
    with TracerProvider(sampler=ALWAYS_OFF).get_tracer("test").start_as_current_span("dropped"):
        assert current_traceparent() is None


def test_unreadable_or_missing_receipts_are_skipped_and_each_receipt_links_once() -> None:
    """A NULL (older row), a malformed value and a repeated receipt give one link per distinct receipt."""
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    links = receipt_links([None, "not-a-traceparent", good, good, "00-" + "0" * 32 + "-" + "0" * 16 + "-01"])
    assert [(f"{x.context.trace_id:032x}", f"{x.context.span_id:016x}") for x in links] == [
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    ]
