"""A tiny Prometheus registry: counters, gauges and callback gauges, rendered in the text exposition format.

Dependency-free on purpose: the service needs a dozen figures on `GET /metrics`, not histograms,
multiprocess mode or a global default registry (prometheus_client's global registry is module state that
tests would have to reset). One `Metrics` object is made by the composition root and passed to whoever
counts. Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (version 0.0.4).

    metrics = Metrics()
    calls = metrics.counter("wiseflow_api_requests_total", "Requests sent to WISEflow.", ["method", "status"])
    calls.inc(method="GET", status=200)
    metrics.gauge_fn("wiseflow_sync_outbox_pending", "Grades waiting for the SIS.", store.count_pending)
    text = await metrics.render_async()   # awaits async callbacks (database figures)
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, TypeAlias, TypeVar

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

LabelValues: TypeAlias = tuple[str, ...]
# What a callback gauge returns: one number (no labels), or a number per label-value tuple
# (a plain string key stands for a 1-tuple, for the common single-label case).
Reading: TypeAlias = float | Mapping[LabelValues, float] | Mapping[str, float]
GaugeCallback: TypeAlias = Callable[[], Reading | Awaitable[Reading]]

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
log = logging.getLogger(__name__)


def escape_label_value(value: str) -> str:
    """A label value as the text format requires: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """A HELP text as the text format requires: backslash and newline escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: whole numbers without a decimal point, infinities and NaN spelled as Prometheus does."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Family:
    """One metric name with its HELP, TYPE and label names."""

    kind: str = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} on {name}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate label names on {name}")
        self.name = name
        self.help = help_text
        self.labels: LabelValues = tuple(labels)

    def render(self, samples: Sequence[tuple[LabelValues, float]]) -> str:
        """HELP, TYPE and one line per sample, samples sorted by label values so output is stable."""
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for values, number in sorted(samples):
            lines.append(f"{self.name}{self._label_text(values)} {format_value(number)}")
        return "\n".join(lines) + "\n"

    def _label_text(self, values: LabelValues) -> str:
        if not self.labels:
            return ""
        pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in zip(self.labels, values, strict=True))
        return "{" + pairs + "}"


class _ValueFamily(_Family):
    """A family whose samples are stored: one number per label-value tuple."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()
        if not self.labels:
            # An unlabelled series exists from the start, so a rate() over it never starts from nothing.
            self._values[()] = 0.0

    def _key(self, given: Mapping[str, str | int]) -> LabelValues:
        if set(given) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {list(self.labels)}, got {sorted(given)}")
        return tuple(str(given[label]) for label in self.labels)

    def _add(self, amount: float, labels: Mapping[str, str | int]) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str | int) -> float:
        """The current value of one series (0 when it was never touched)."""
        key = self._key(labels)
        with self._lock:
            return self._values.get(key, 0.0)

    def samples(self) -> list[tuple[LabelValues, float]]:
        """Every series and its value."""
        with self._lock:
            return list(self._values.items())


class Counter(_ValueFamily):
    """A number that only goes up (requests sent, events received); resets only with the process."""

    kind = "counter"

    def inc(self, amount: float = 1.0, /, **labels: str | int) -> None:
        """Add `amount` (>= 0) to the series named by `labels`."""
        if amount < 0 or math.isnan(amount):
            raise ValueError(f"{self.name}: a counter cannot decrease")
        self._add(amount, labels)


class Gauge(_ValueFamily):
    """A number that goes up and down (in-flight requests, breaker state)."""

    kind = "gauge"

    def set(self, value: float, /, **labels: str | int) -> None:
        """Set the series named by `labels` to `value`."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, /, **labels: str | int) -> None:
        """Add `amount` to the series."""
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, /, **labels: str | int) -> None:
        """Subtract `amount` from the series."""
        self._add(-amount, labels)


class CallbackGauge(_Family):
    """A gauge read at render time from a function (sync or async): figures that live in the database."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, fn: GaugeCallback, labels: Sequence[str]) -> None:
        super().__init__(name, help_text, labels)
        self.fn = fn

    def to_samples(self, reading: Reading) -> list[tuple[LabelValues, float]]:
        """The callback's reading as samples; a reading that does not fit the label names is an error."""
        if isinstance(reading, Mapping):
            samples = []
            for key, number in reading.items():
                values = (key,) if isinstance(key, str) else tuple(str(v) for v in key)
                if len(values) != len(self.labels):
                    raise ValueError(f"{self.name}: label values {values} do not fit {list(self.labels)}")
                samples.append((values, float(number)))
            return samples
        if self.labels:
            raise ValueError(f"{self.name}: labelled gauge callback returned a single number")
        return [((), float(reading))]


class CallbackCounter(CallbackGauge):
    """A counter read at render time: a running total owned by another object (requests sent, runs)."""

    kind = "counter"


_F = TypeVar("_F", bound="_ValueFamily | CallbackGauge")


class Metrics:
    """The registry: families in registration order, rendered together for `GET /metrics`."""

    def __init__(self) -> None:
        self._families: dict[str, _ValueFamily | CallbackGauge] = {}
        self._lock = threading.Lock()

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        """Register and return a counter (conventionally named `..._total`)."""
        return self._register(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        """Register and return a gauge."""
        return self._register(Gauge(name, help, labels))

    def gauge_fn(self, name: str, help: str, fn: GaugeCallback, labels: Sequence[str] = ()) -> CallbackGauge:
        """Register a gauge whose value `fn` returns at render time (awaited by `render_async`)."""
        return self._register(CallbackGauge(name, help, fn, labels))

    def counter_fn(
        self, name: str, help: str, fn: GaugeCallback, labels: Sequence[str] = ()
    ) -> CallbackCounter:
        """Register a counter whose running total `fn` returns at render time; the name must end in `_total`."""
        if not name.endswith("_total"):
            raise ValueError(f"{name}: a counter's name ends in _total")
        return self._register(CallbackCounter(name, help, fn, labels))

    def _register(self, family: _F) -> _F:
        with self._lock:
            if family.name in self._families:
                raise ValueError(f"metric {family.name} is already registered")
            self._families[family.name] = family
        return family

    def _snapshot(self) -> list[_ValueFamily | CallbackGauge]:
        with self._lock:
            return list(self._families.values())

    def render(self) -> str:
        """The exposition text; a callback that returns an awaitable is a TypeError here (`render_async`)."""
        parts = []
        for family in self._snapshot():
            if isinstance(family, CallbackGauge):
                reading = _call(family)
                if inspect.isawaitable(reading):
                    if inspect.iscoroutine(reading):
                        reading.close()  # never awaited on purpose: closed so no warning leaks
                    raise TypeError(f"{family.name} has an async callback: use render_async()")
                parts.append(family.render(_samples_of(family, reading)))
            else:
                parts.append(family.render(family.samples()))
        return "".join(parts)

    async def render_async(self) -> str:
        """The exposition text, awaiting callbacks that return awaitables (database reads)."""
        parts = []
        for family in self._snapshot():
            if isinstance(family, CallbackGauge):
                reading = _call(family)
                if inspect.isawaitable(reading):
                    reading = await _settle(family, reading)
                parts.append(family.render(_samples_of(family, reading)))
            else:
                parts.append(family.render(family.samples()))
        return "".join(parts)


def _call(family: CallbackGauge) -> Reading | Awaitable[Reading] | None:
    """The callback's result, or None when it raised: one failing figure must not fail the whole scrape."""
    try:
        return family.fn()
    except Exception:
        _warn(family)
        return None


async def _settle(family: CallbackGauge, pending: Awaitable[Reading]) -> Reading | None:
    """The awaited reading, or None when it raised."""
    try:
        return await pending
    except Exception:
        _warn(family)
        return None


def _samples_of(family: CallbackGauge, reading: Reading | None) -> list[tuple[LabelValues, float]]:
    """The reading as samples; none (logged) when the callback failed or returned an unusable shape."""
    if reading is None:
        return []
    try:
        return family.to_samples(reading)
    except (ValueError, TypeError):
        _warn(family)
        return []


def _warn(family: CallbackGauge) -> None:
    # exc_info: the exception type reaches the log; the JSON formatter redacts its text.
    log.warning(
        "metric callback failed",
        exc_info=True,
        extra={"event": "metrics.callback_failed", "metric": family.name},
    )
