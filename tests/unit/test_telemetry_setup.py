"""Tracing setup without a network: sampler names, attribute redaction, provider wiring."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from service.adapters.telemetry import (
    SAMPLER_NAMES,
    WebhookRatioSampler,
    is_sensitive_attribute,
    parse_sampler,
    safe_attributes,
    setup_tracing,
)
from service.core.redact import MASK
from service.errors import ConfigError
from service.settings import Settings


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [
        ("always_on", None, ALWAYS_ON),
        ("always_off", None, ALWAYS_OFF),
        ("traceidratio", "0.25", TraceIdRatioBased(0.25)),
        ("traceidratio", None, TraceIdRatioBased(1.0)),
        ("parentbased_always_on", None, ParentBased(ALWAYS_ON)),
        ("parentbased_always_off", None, ParentBased(ALWAYS_OFF)),
        ("parentbased_traceidratio", "0.1", ParentBased(TraceIdRatioBased(0.1))),
        ("ParentBased_TraceIdRatio", "0", ParentBased(TraceIdRatioBased(0.0))),
    ],
)
def test_standard_sampler_names_build_the_standard_samplers(
    name: str, arg: str | None, expected: Sampler
) -> None:
    """Each standard OTEL_TRACES_SAMPLER name (any case) yields that sampler, with the ratio argument."""
    assert parse_sampler(name, arg).get_description() == expected.get_description()


def test_every_advertised_sampler_name_parses() -> None:
    """SAMPLER_NAMES, which error messages list, holds only names parse_sampler accepts."""
    assert all(parse_sampler(name, "0.5") is not None for name in SAMPLER_NAMES)
    assert len(SAMPLER_NAMES) == 7  # the six standard names and the default, webhook_ratio


def test_the_default_sampler_is_webhook_ratio_with_a_receipt_ratio_of_one_in_a_hundred() -> None:
    """Unset OTEL_TRACES_SAMPLER is `webhook_ratio`; its ARG sets the receipt ratio (default 0.01)."""
    assert Settings().otel_sampler == "webhook_ratio"
    assert parse_sampler("webhook_ratio").get_description() == "WebhookRatioSampler{0.01}"
    assert parse_sampler("WEBHOOK_RATIO", "0.25").get_description() == "WebhookRatioSampler{0.25}"


def test_webhook_ratio_samples_receipts_by_ratio_and_everything_else_always() -> None:
    """Ratio 0: an unanswered webhook receipt is dropped; its answered span, other spans and runs are kept."""
    sampler = WebhookRatioSampler(0.0)
    receipt = {"http.request.method": "POST", "http.route": "/webhooks/wiseflow"}

    def sampled(name: str, kind: SpanKind, attributes: dict[str, str | int]) -> bool:
        return sampler.should_sample(None, 0x1234, name, kind, attributes).decision.is_sampled()

    assert not sampled("POST /webhooks/wiseflow", SpanKind.SERVER, receipt)
    assert sampled("POST /webhooks/wiseflow", SpanKind.SERVER, {**receipt, "http.response.status_code": 401})
    assert sampled("GET /status", SpanKind.SERVER, {"http.route": "/status"})
    assert sampled("sync.run", SpanKind.INTERNAL, {})
    assert sampled("webhook.process", SpanKind.CONSUMER, {"http.route": "/webhooks/wiseflow"})
    always = WebhookRatioSampler(1.0)
    assert always.should_sample(
        None, 0x1234, "POST /webhooks/wiseflow", SpanKind.SERVER, receipt
    ).decision.is_sampled()


def test_unknown_sampler_name_names_the_variable() -> None:
    """A sampler name outside the standard set stops startup naming OTEL_TRACES_SAMPLER."""
    with pytest.raises(ConfigError) as info:
        parse_sampler("jaeger_remote")
    assert info.value.variable == "OTEL_TRACES_SAMPLER"


@pytest.mark.parametrize("arg", ["abc", "1.5", "-0.1", "nan"])
def test_bad_ratio_names_the_argument_variable(arg: str) -> None:
    """A ratio that is not a number from 0 to 1 stops startup naming OTEL_TRACES_SAMPLER_ARG."""
    with pytest.raises(ConfigError) as info:
        parse_sampler("traceidratio", arg)
    assert info.value.variable == "OTEL_TRACES_SAMPLER_ARG"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("http.request.header.authorization", True),
        ("http.request.header.x-api-key", True),
        ("wiseflow.client_secret", True),
        ("user.email", True),
        ("access_token", True),
        ("wiseflow.trace_id", False),
        ("http.response.status_code", False),
        ("wiseflow.flow_id", False),
    ],
)
def test_sensitive_attribute_keys(key: str, expected: bool) -> None:
    """A namespaced key is sensitive when its full name or its last segment is."""
    assert is_sensitive_attribute(key) == expected


def test_safe_attributes_masks_keys_urls_and_bearer_text() -> None:
    """Sensitive keys become ***, URLs lose userinfo and secret query values, free text loses bearer tokens."""
    attributes = {
        "url.full": "https://u:p@api.example/v1/flows?access_token=abc&page=2",
        "error.detail": "sent Bearer abc.def",
        "http.request.header.cookie": "sid=1",
        "wiseflow.flow_ids": ["1", "2"],
        "http.response.status_code": 429,
    }
    expected = {
        "url.full": "https://api.example/v1/flows?access_token=%2A%2A%2A&page=2",
        "error.detail": f"sent Bearer {MASK}",
        "http.request.header.cookie": MASK,
        "wiseflow.flow_ids": ("1", "2"),
        "http.response.status_code": 429,
    }
    assert safe_attributes(attributes) == expected


def test_injected_exporter_receives_redacted_spans_with_the_service_resource() -> None:
    """A test exporter gets each span at its end, attributes set after start masked, resource named."""
    exporter = InMemorySpanExporter()
    settings = Settings(otel_service_name="unit-svc")
    handle = setup_tracing(settings, env={}, exporter=exporter, set_global=False)
    with handle.tracer("t").start_as_current_span("work") as span:
        span.set_attribute("wiseflow.api_key", "k-1")
        span.set_attribute("wiseflow.flow_id", 7)
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == {"wiseflow.api_key": MASK, "wiseflow.flow_id": 7}
    assert finished.resource.attributes["service.name"] == "unit-svc"
    assert handle.exporting
    assert handle.shutdown(5.0)


def test_without_endpoint_spans_still_carry_trace_ids() -> None:
    """No OTEL endpoint: nothing is exported, but spans record and have valid ids for the logs."""
    handle = setup_tracing(Settings(), env={}, set_global=False)
    with handle.tracer("t").start_as_current_span("work") as span:
        assert span.get_span_context().is_valid
        assert span.is_recording()
    assert not handle.exporting
    assert handle.shutdown(5.0)


def test_sampler_argument_is_read_from_the_given_environment() -> None:
    """OTEL_TRACES_SAMPLER_ARG from `env` sets the ratio: 0 samples nothing."""
    exporter = InMemorySpanExporter()
    settings = Settings(otel_sampler="traceidratio")
    handle = setup_tracing(settings, env={"OTEL_TRACES_SAMPLER_ARG": "0"}, exporter=exporter, set_global=False)
    with handle.tracer("t").start_as_current_span("work"):
        pass
    assert exporter.get_finished_spans() == ()
    assert handle.shutdown(5.0)


def test_shutdown_is_idempotent() -> None:
    """A second shutdown (SIGTERM handler and cleanup both calling it) is harmless."""
    handle = setup_tracing(Settings(), env={}, exporter=InMemorySpanExporter(), set_global=False)
    assert handle.shutdown(5.0)
    assert handle.shutdown(5.0)
