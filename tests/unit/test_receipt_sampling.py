"""A webhook receipt's sampling decided before its span exists (`ReceiptSampling`), on real SDK providers."""

from __future__ import annotations

import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from service.adapters.telemetry import (
    DrawnTraceIds,
    ReceiptSampling,
    WebhookRatioSampler,
    receipt_sampling,
    setup_tracing,
)
from service.settings import Settings

RECEIPT = {"http.request.method": "POST", "http.route": "/webhooks/wiseflow"}


def _traced(ratio: str) -> tuple[TracerProvider, InMemorySpanExporter, ReceiptSampling]:
    exporter = InMemorySpanExporter()
    handle = setup_tracing(
        Settings(), env={"OTEL_TRACES_SAMPLER_ARG": ratio}, exporter=exporter, set_global=False
    )
    receipts = receipt_sampling(handle.provider)
    assert receipts is not None  # the default sampler, as setup_tracing builds it
    return handle.provider, exporter, receipts


def test_the_early_rule_is_the_samplers_own_decision() -> None:
    """For any trace id, `samples_receipt` says what the sampler decides for a receipt span."""
    sampler = WebhookRatioSampler(0.3)
    draw = random.Random(7)
    for _ in range(2000):
        trace_id = draw.getrandbits(128) or 1
        decided = sampler.should_sample(None, trace_id, "POST /webhooks/wiseflow", SpanKind.SERVER, RECEIPT)
        assert sampler.samples_receipt(trace_id) is (decided.decision is Decision.RECORD_AND_SAMPLE)


def test_receipts_are_sampled_at_the_ratio_and_only_those_get_a_span() -> None:
    """Ratio 0.25 over 2,000 receipts: about a quarter get a recording span (the sampler agrees with each),
    the rest get none, and exactly the spans returned are exported."""
    provider, exporter, receipts = _traced("0.25")
    tracer = provider.get_tracer("test")
    spans = []
    for _ in range(2000):
        span = receipts.start_span(tracer, "POST /webhooks/wiseflow", RECEIPT, 1)
        if span is not None:
            assert span.is_recording()
            span.end()
            spans.append(span)
    assert 400 <= len(spans) <= 600  # binomial(2000, 0.25): mean 500, sd 19
    exported = exporter.get_finished_spans()
    assert [s.context.span_id for s in exported] == [s.get_span_context().span_id for s in spans]
    sampler = provider.sampler
    assert isinstance(sampler, WebhookRatioSampler)
    assert all(sampler.samples_receipt(s.context.trace_id) for s in exported)
    assert len({s.context.trace_id for s in exported}) == len(exported)


@pytest.mark.parametrize(("ratio", "sampled"), [("0", 0), ("1", 50)])
def test_ratio_zero_makes_no_span_and_ratio_one_a_span_each(ratio: str, sampled: int) -> None:
    """The bounds of the ratio: never, and always."""
    provider, exporter, receipts = _traced(ratio)
    tracer = provider.get_tracer("test")
    got = [receipts.start_span(tracer, "POST /webhooks/wiseflow", RECEIPT, 1) for _ in range(50)]
    for span in got:
        if span is not None:
            span.end()
    assert sum(span is not None for span in got) == sampled
    assert len(exporter.get_finished_spans()) == sampled


def test_a_trace_id_drawn_ahead_goes_to_one_root_span_only() -> None:
    """The next root span takes the drawn id; the one after draws its own, and so does any span once the
    block is left (even by an exception before a span was started)."""
    ids = DrawnTraceIds()
    tracer = TracerProvider(sampler=ALWAYS_ON, id_generator=ids).get_tracer("test")
    with ids.next_trace_id(0xABC):
        first = tracer.start_span("first")
        second = tracer.start_span("second")
    assert first.get_span_context().trace_id == 0xABC
    assert second.get_span_context().trace_id != 0xABC
    with pytest.raises(RuntimeError), ids.next_trace_id(0xDEF):
        raise RuntimeError("before any span")
    assert tracer.start_span("after").get_span_context().trace_id != 0xDEF


def test_early_sampling_only_where_the_default_sampler_and_its_ids_are() -> None:
    """Another sampler, the SDK's own ids, or no SDK provider: receipts get their spans as usual."""
    assert receipt_sampling(TracerProvider(sampler=WebhookRatioSampler(), id_generator=DrawnTraceIds()))
    assert (
        receipt_sampling(TracerProvider(sampler=TraceIdRatioBased(0.5), id_generator=DrawnTraceIds())) is None
    )
    assert receipt_sampling(TracerProvider(sampler=WebhookRatioSampler())) is None
    assert receipt_sampling(trace.NoOpTracerProvider()) is None
