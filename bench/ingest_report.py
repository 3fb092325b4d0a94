"""What `bench/ingest.py` prints: every round, the medians and verdicts, and the headline rows."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

import loadtools as lt
from ingest_drain import Drain

TARGET_OF_LIMIT = 0.85  # the service's requests/s against the minimal durable receiver's (issue 21)
TARGET_TRACING = 0.10  # what tracing at the default sampler may cost of the service's throughput
NAMES = {"bare": "bare aiohttp handler", "limit": "minimal durable receiver", "service": "wiseflow-sync run"}


@dataclass(frozen=True)
class Measured:
    """One wrk run against one server: the client's figures and the server's CPU seconds."""

    wrk: lt.WrkResult
    cpu: float
    split: lt.CpuSplit

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per request, every thread of the server."""
        return self.cpu / max(self.wrk.requests, 1) * 1e6


@dataclass
class Figures:
    """Everything measured, for the report."""

    disk: tuple[float, float]
    rounds: list[dict[str, Measured]]
    samplers: list[tuple[str, Measured]] = field(default_factory=list)
    open_loop: list[tuple[int, str, Measured]] = field(default_factory=list)
    profile: str = ""
    drain: Drain | None = None
    arrival_rate: float = 0.0


def describe(m: Measured) -> str:
    """E.g. "5,563 req/s, p50 5.1 ms, p99 18.8 ms, 180 us CPU a request, 0 errors"."""
    errors = m.wrk.non_2xx + m.wrk.socket_errors
    return (
        f"{m.wrk.rate:,.0f} req/s, p50 {m.wrk.p50_ms:.2f} ms, p99 {m.wrk.p99_ms:.2f} ms, "
        f"{m.cpu_us:.0f} us CPU a request, {errors} errors"
    )


def round_line(n: int, got: dict[str, Measured]) -> str:
    """One round in a line: each target's rate and the service's ratios."""
    rates = ", ".join(f"{name} {m.wrk.rate:,.0f}/s" for name, m in got.items())
    ratios = f"service/limit {_ratio(got, 'limit'):.2f}, service/bare {_ratio(got, 'bare'):.2f}"
    return f"  round {n}: {rates}; {ratios}"


def _ratio(got: dict[str, Measured], of: str) -> float:
    return got["service"].wrk.rate / got[of].wrk.rate


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


def _row(figure: str, value: str, target: str = "-", passed: bool | None = None) -> list[str]:
    """One headline row for `bench/all.py`: benchmark, figure, value, target, verdict."""
    return ["ingest", figure, value, target, "-" if passed is None else _ok(passed)]


def report(args: argparse.Namespace, f: Figures) -> list[list[str]]:
    """Print the tables and the verdicts; return the headline rows for `--json`."""
    print(
        f"\nwebhook ingest: wrk, 1 thread, {args.connections} keep-alive connections, {args.duration:g} s a "
        f"run, {len(f.rounds)} interleaved rounds, loopback, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}; the disk: fsync p50 {f.disk[0]:.2f} ms, p90 {f.disk[1]:.2f} ms"
    )
    print(
        f"{'round':>5} {'server':<26} {'req/s':>8} {'of bare':>8} {'of limit':>8} {'p50 ms':>7} {'p99 ms':>7}",
        end="",
    )
    print(f" {'non-2xx':>8} {'cpu us/req':>10}")
    for n, got in enumerate(f.rounds, 1):
        for name, m in got.items():
            errors = m.wrk.non_2xx + m.wrk.socket_errors
            print(
                f"{n:>5} {NAMES[name]:<26} {m.wrk.rate:>8,.0f} {m.wrk.rate / got['bare'].wrk.rate:>8.2f} "
                f"{m.wrk.rate / got['limit'].wrk.rate:>8.2f} {m.wrk.p50_ms:>7.2f} {m.wrk.p99_ms:>7.2f} "
                f"{errors:>8} {m.cpu_us:>10.0f}"
            )
    median = sorted(f.rounds, key=lambda got: _ratio(got, "limit"))[len(f.rounds) // 2]
    of_limit, of_bare = _ratio(median, "limit"), _ratio(median, "bare")
    errors = sum(g["service"].wrk.non_2xx + g["service"].wrk.socket_errors for g in f.rounds)
    print(
        f"median round: service at {of_limit:.2f} of the limit (target >= {TARGET_OF_LIMIT}: "
        f"{_ok(of_limit >= TARGET_OF_LIMIT)}), {of_bare:.2f} of the bare handler; service errors: {errors}"
    )
    for name in ("limit", "service"):
        split = median[name].split.per_request_us(median[name].wrk.requests)
        print(f"{NAMES[name]} CPU per request, median round: {split}")
    cpu = " / ".join(f"{median[n].cpu_us:.0f}" for n in ("service", "limit", "bare"))
    p99 = f"{median['service'].wrk.p99_ms:.1f} / {median['limit'].wrk.p99_ms:.1f} ms"
    rows = [
        _row(
            "service / minimal durable receiver",
            f"{of_limit:.2f}",
            f">= {TARGET_OF_LIMIT}",
            of_limit >= TARGET_OF_LIMIT,
        ),
        _row("service / bare aiohttp handler", f"{of_bare:.2f}"),
        _row("CPU per webhook: service / limit / bare", f"{cpu} us"),
        _row(f"p99 at {args.connections} connections: service / limit", p99),
        _row("disk fsync p50 / p90 (context)", f"{f.disk[0]:.2f} / {f.disk[1]:.2f} ms"),
        _row("non-2xx answers under load", str(errors), "0", errors == 0),
    ]
    rows += _samplers(f) + _open_loop(f)
    print(f.profile)
    if f.drain is not None:
        rows += _drain(f.drain, f.arrival_rate)
    return rows


def _samplers(f: Figures) -> list[list[str]]:
    if not f.samplers:
        return []
    off = next(m for label, m in f.samplers if label == "always_off")
    print("tracing priced (the median of three runs each, spans exported to a local OTLP sink):")
    for label, m in f.samplers:
        print(f"  {label:<20} {describe(m)}; {m.wrk.rate / off.wrk.rate:.2f} of always_off")
    default = next(m for label, m in f.samplers if label == "default")
    cost = 1 - default.wrk.rate / off.wrk.rate
    cpu = default.cpu_us - off.cpu_us
    return [
        _row(
            "tracing cost at the default sampler",
            f"{cost:.0%} ({cpu:+.0f} us)",
            f"<= {TARGET_TRACING:.0%}",
            cost <= TARGET_TRACING,
        )
    ]


def _open_loop(f: Figures) -> list[list[str]]:
    if not f.open_loop:
        return []
    print("open loop (wrk paced to a fixed rate; latency from the actual send):")
    rows = []
    for rate, name, m in f.open_loop:
        held = m.wrk.rate / rate
        note = "" if held >= 0.98 else f"  (rate NOT held: {held:.2f}; latency understated)"
        latency = f"p50 {m.wrk.p50_ms:6.2f} ms  p99 {m.wrk.p99_ms:6.2f} ms"
        print(f"  {rate:>5,}/s {NAMES[name]:<26} {latency}  {m.cpu_us:4.0f} us CPU{note}")
        if name == "service":
            value = f"{m.wrk.p50_ms:.1f} / {m.wrk.p99_ms:.1f} ms" + ("" if held >= 0.98 else " (rate not held)")
            rows.append(_row(f"open loop {rate:,}/s: service p50 / p99", value))
    return rows


def _drain(burst: Drain, arrival_rate: float) -> list[list[str]]:
    arrival = burst.events / arrival_rate
    drain_ok = burst.seconds < arrival
    print(
        f"drain: {burst.events:,} stored FINAL_GRADE events over 50 flows processed in {burst.seconds:.1f} s "
        f"(they arrive in {arrival:.1f} s at the measured rate: {_ok(drain_ok)}); {burst.calls} WISEflow "
        f"calls, {burst.refreshes} of them grade refreshes ({burst.refreshes / 50:.1f} per flow)"
    )
    return [
        _row(f"drain of {burst.events:,} events", f"{burst.seconds:.1f} s", f"< {arrival:.1f} s", drain_ok),
        _row("WISEflow refreshes per flow (drain)", f"{burst.refreshes / 50:.1f}", "per flow"),
    ]
