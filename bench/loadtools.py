"""The outside tools of the HTTP benchmarks: `wrk` (load), `py-spy` (profile), /proc (CPU), processes.

Kept apart from `bench/ingest.py` so that the benchmark reads as its method: what is measured, in which
order, and how it is reported.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRK_INSTALL = "apt-get install -y wrk (Debian/Ubuntu; `make bench` does it when run as root), brew install wrk"
PY_SPY_INSTALL = "pip install py-spy (in the dev extra: pip install -e '.[dev]')"

# The Lua side of wrk: every request is one line of the events file ("<signature> <body>"), formatted
# once in `init`, so the load generator spends nothing per request but a table lookup. `done` prints the
# figures as one JSON line that `run_wrk` picks out of wrk's output.
_LUA = r"""
local requests = {}
local count = 0
local next_index = 0

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local signature, body = line:match("^(%S+) (.*)$")
    count = count + 1
    requests[count] = wrk.format("POST", args[2], {
      ["Content-Type"] = "application/json",
      ["X-Wiseflow-Signature"] = signature,
    }, body)
  end
  file:close()
end

function request()
  next_index = next_index + 1
  if next_index > count then next_index = 1 end
  return requests[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""

# Open loop, as far as wrk allows (no wrk2, oha or vegeta in Debian's packages or on PyPI): the thread keeps
# one schedule, a slot every 1000/rate ms, and each connection, once answered, waits (`delay`) for the next
# free slot; slots missed while every connection was busy are sent at once, so the rate holds on average.
# Limits: latency is timed from the actual send, not the slot (a server that stalls is under-reported:
# coordinated omission), so `run_wrk` reports the rate held and the caller flags a run that fell behind;
# wrk's timers have 1 ms resolution; each connection's first request goes at the start.
_PACING = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
int clock_gettime(int clock, wrk_timespec *ts);
]]
local now_ts = ffi.new("wrk_timespec")
local interval_ms = 1000 / tonumber(RATE)
local next_slot = nil

local function now_ms()
  ffi.C.clock_gettime(1, now_ts)  -- CLOCK_MONOTONIC
  return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end

function delay()
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  next_slot = next_slot + interval_ms
  if next_slot <= now then return 0 end
  return math.floor(next_slot - now + 0.5)
end
"""


def write_lua(folder: Path, rate: int | None = None) -> Path:
    """The wrk script, written into `folder`; with `rate` (requests/s), paced to hold it (1 thread)."""
    path = folder / ("post_events.lua" if rate is None else f"post_events_{rate}.lua")
    path.write_text(_LUA if rate is None else _LUA + _PACING.replace("RATE", str(rate)))
    return path


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured, from the client's side."""

    requests: int
    seconds: float
    non_2xx: int  # answered with a status >= 400 (wrk counts those as errors)
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Requests per second (every request, whatever its answer)."""
        return self.requests / self.seconds


def find_wrk() -> str:
    """The `wrk` executable, or exit with how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(f"wrk (the load generator) is not on PATH; install it: {WRK_INSTALL}")
    return found


def find_py_spy() -> str | None:
    """The `py-spy` executable (on PATH or beside this Python), or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def run_wrk(
    wrk: str, lua: Path, events: Path, url: str, *, seconds: float, connections: int, threads: int = 1
) -> WrkResult:
    """One wrk run posting the lines of `events` to `url`; its figures."""
    path = re.sub(r"^https?://[^/]+", "", url)
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s"]
    command += ["-s", str(lua), url, "--", str(events), path]
    out = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our command
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    doc = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=doc["requests"],
        seconds=doc["duration_us"] / 1e6,
        non_2xx=doc["non_2xx"],
        socket_errors=doc["socket_errors"],
        p50_ms=doc["p50_us"] / 1000,
        p99_ms=doc["p99_us"] / 1000,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads (Linux /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds of a process: its main thread (the event loop) and its other threads, user and kernel."""

    loop_user: float = 0.0
    loop_kernel: float = 0.0
    threads_user: float = 0.0
    threads_kernel: float = 0.0

    @property
    def total(self) -> float:
        return self.loop_user + self.loop_kernel + self.threads_user + self.threads_kernel

    def __sub__(self, other: CpuSplit) -> CpuSplit:
        return CpuSplit(
            self.loop_user - other.loop_user,
            self.loop_kernel - other.loop_kernel,
            self.threads_user - other.threads_user,
            self.threads_kernel - other.threads_kernel,
        )

    def per_request_us(self, requests: int) -> str:
        """E.g. "event loop 420 us (user 380, kernel 40), other threads 110 us (user 60, kernel 50)"."""
        us = 1e6 / max(requests, 1)
        loop_user, loop_kernel = self.loop_user * us, self.loop_kernel * us
        rest_user, rest_kernel = self.threads_user * us, self.threads_kernel * us
        return (
            f"event loop {loop_user + loop_kernel:.0f} us (user {loop_user:.0f}, kernel {loop_kernel:.0f}), "
            f"other threads {rest_user + rest_kernel:.0f} us (user {rest_user:.0f}, kernel {rest_kernel:.0f})"
        )


def cpu_split(pid: int) -> CpuSplit:
    """`CpuSplit` of process `pid` now, from /proc/<pid>/task/*/stat (a thread that ended is not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    loop_user = loop_kernel = threads_user = threads_kernel = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        user, kernel = int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime
        if task.name == str(pid):
            loop_user, loop_kernel = user, kernel
        else:
            threads_user += user
            threads_kernel += kernel
    return CpuSplit(loop_user, loop_kernel, threads_user, threads_kernel)


def fsync_ms(folder: Path, count: int = 40) -> tuple[float, float]:
    """The median and 90th percentile of an fsync after a 4 KiB append in `folder`, in milliseconds.

    synchronous=FULL pays one per group commit: on a shared or network disk this, not the code, can bound
    what 32 connections can get through (32 requests per commit at most).
    """
    times = []
    fd = os.open(folder / "fsync.probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.9)]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Return once something accepts on `port`; fail if `process` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start within {timeout:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then wait (the service drains and exits within its grace period)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- py-spy ----------------------------------------------------------------------------------------------


def start_profile(py_spy: str, pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """`py-spy record` of `pid` for about `seconds` less one, non-blocking (never pausing it), Python only."""
    command = [py_spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "500"]
    command += ["--duration", str(max(1, int(seconds) - 1)), "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")


def own_time(collapsed: str, top: int = 15) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """From py-spy's collapsed stacks: samples, the top functions by own time and the share of each area."""
    own: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        match = _FRAME.match(leaf)
        function, file = (match["function"], match["file"]) if match else (leaf, "?")
        short = _short_file(file)
        own[f"{function} ({short})"] += int(count)
        areas[_area(short)] += int(count)
        total += int(count)
    share = [(name, n / total) for name, n in own.most_common(top)] if total else []
    by_area = [(name, n / total) for name, n in areas.most_common()] if total else []
    return total, share, by_area


def _short_file(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            rest = file.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker.startswith("/lib") else rest
    return file.split(str(ROOT) + "/", 1)[-1]


def _area(short_file: str) -> str:
    for prefix, area in (
        ("service/", "service (our code)"),
        ("aiohttp/", "aiohttp"),
        ("opentelemetry/", "opentelemetry"),
        ("aiosqlite/", "aiosqlite + sqlite3"),
        ("sqlite3/", "aiosqlite + sqlite3"),
        ("asyncio/", "asyncio"),
        ("logging/", "logging"),
    ):
        if short_file.startswith(prefix):
            return area
    return "other (stdlib, C calls)"
