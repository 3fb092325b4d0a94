"""Black-box acceptance of the documented contract: the installed command, its HTTP endpoints and the simulator.

Everything here runs `wiseflow-sync` as real subprocesses on 127.0.0.1 and looks only at what an operator
sees: exit codes, stdout/stderr lines, HTTP answers and the simulator's fake SIS. No service module is
imported. One simulator (`simulate`, a small world) serves the whole module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import PROCESS_DEADLINE, wait_until_blocking

pytestmark = pytest.mark.slow

CLIENT_SECRET = "bb-client-secret-7Qx"
API_KEY = "bb-api-key-9Zr"
WEBHOOK_SECRET = "bb-webhook-secret-4Kp"
SECRETS = (CLIENT_SECRET, API_KEY, WEBHOOK_SECRET)
GRADE_FIELDS = ["flowId", "participantId", "grade", "adminGrade", "date"]
EXIT_USAGE = 2
EXIT_PAUSED = 75


def command() -> list[str]:
    """The installed `wiseflow-sync` script next to this interpreter (else `python -m service`)."""
    script = Path(sys.executable).parent / "wiseflow-sync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def base_env(**extra: str) -> dict[str, str]:
    """The process environment without any WISEFLOW_/SYNC_/OTEL_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_", "OTEL_", "LOG_"))}
    env.update(extra)
    return env


@dataclass
class Result:
    """What one finished command showed."""

    code: int
    out: str
    err: str


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = PROCESS_DEADLINE) -> Result:
    """Run `wiseflow-sync args...` to completion."""
    done = subprocess.run(  # noqa: S603 (our own command, fixed arguments)
        [*command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP request; (status, body) for any status."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback http only)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(method: str, url: str, payload: Any = None) -> Any:
    """A JSON request expecting a 2xx JSON answer."""
    body = None if payload is None else json.dumps(payload).encode()
    status, raw = http(method, url, body, {"Content-Type": "application/json"})
    assert 200 <= status < 300, (status, raw[:200])
    return json.loads(raw)


def wait_http(url: str, proc: subprocess.Popen[bytes], within: float = PROCESS_DEADLINE) -> None:
    """Poll `url` until it answers 200 (the process must stay alive)."""

    def answers() -> bool:
        assert proc.poll() is None, "the process exited before answering"
        try:
            return http("GET", url)[0] == 200
        except OSError:
            return False

    wait_until_blocking(answers, what=f"{url} answering 200", within=within)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process the test did not stop itself, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@dataclass
class Sim:
    """A `wiseflow-sync simulate` subprocess."""

    root: str
    env: dict[str, str]

    @property
    def api_url(self) -> str:
        """WISEFLOW_API_URL for a client of this simulator."""
        return self.root + "/v1"

    def scenario(self, payload: dict[str, Any]) -> Any:
        """POST /_sim/scenario."""
        return http_json("POST", self.root + "/_sim/scenario", payload)

    def sis(self) -> Any:
        """GET /_sis/grades."""
        return http_json("GET", self.root + "/_sis/grades")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """A small calm simulator with this module's credentials and webhook secret."""
    port = free_port()
    env = base_env(
        WISEFLOW_CLIENT_ID="bb-client",
        WISEFLOW_CLIENT_SECRET=CLIENT_SECRET,
        WISEFLOW_API_KEY=API_KEY,
        WISEFLOW_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    logs = tmp_path_factory.mktemp("sim") / "sim.log"
    with logs.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 (our own command)
            [*command(), "simulate", "--port", str(port), "--seed", "3", "--flows", "6", "--participants", "4"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        root = f"http://127.0.0.1:{port}"
        wait_http(root + "/_sim/scenario", proc)
        yield Sim(root, env)
    finally:
        stop(proc)


def client_env(sim: Sim, db: Path, **extra: str) -> dict[str, str]:
    """Settings of a service pointed at the simulator and its fake SIS."""
    return base_env(
        WISEFLOW_API_URL=sim.api_url,
        WISEFLOW_CLIENT_ID="bb-client",
        WISEFLOW_CLIENT_SECRET=CLIENT_SECRET,
        WISEFLOW_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SYNC_SINK_URL=sim.root + "/_sis/grades",
        SYNC_DATABASE=str(db),
        SYNC_RATE_PER_SECOND="200",
        **extra,
    )


def assert_one_line(text: str) -> str:
    """The text is exactly one non-empty line; return it."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def assert_no_secret(*texts: str) -> None:
    """None of this module's secrets appears in any of the texts."""
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# --- bad flags and settings ---

BAD_ARGS = [
    [],
    ["bogus"],
    ["sync"],
    ["sync", "--once", "--bogus"],
    ["export", "grades", "--format", "xml"],
    ["certify", "--format", "xml"],
    ["diagnose"],
    ["diagnose", "'; drop table x;--"],
    ["inbox", "replay"],
    ["inbox", "replay", "abc"],
    ["simulate", "--port", "70000"],
    ["simulate", "--profile", "bogus"],
    ["demo", "--duration", "abc"],
    ["webhooks"],
]

BAD_SETTINGS = [
    ("WISEFLOW_API_URL", "ftp://example.org/v1"),
    ("WISEFLOW_WEBHOOK_SCHEME", "bogus"),
    ("WISEFLOW_WEBHOOK_SIGNATURE_HEADER", "bad header"),
    ("WISEFLOW_WEBHOOK_TOLERANCE", "abc"),
    ("SYNC_HTTP_PORT", "70000"),
    ("SYNC_POLL_INTERVAL", "nan"),
    ("SYNC_RATE_PER_SECOND", "0"),
    ("SYNC_RATE_PER_MINUTE", "1.5"),
    ("SYNC_MAX_WAIT", "-1"),
    ("SYNC_SINK_URL", "not-a-url"),
    ("LOG_LEVEL", "LOUD"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "not-a-url"),
]


def test_every_bad_flag_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """Each malformed command line is refused with exactly one line on stderr, nothing on stdout, exit 2."""
    env = base_env()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda args: cli(*args, env=env, cwd=tmp_path), BAD_ARGS))
    for args, result in zip(BAD_ARGS, results, strict=True):
        assert (result.code, result.out) == (EXIT_USAGE, ""), args
        assert assert_one_line(result.err).startswith("wiseflow-sync"), args
    assert list(tmp_path.iterdir()) == []


def test_every_malformed_setting_names_its_variable_in_one_line_without_secrets(tmp_path: Path) -> None:
    """A malformed setting stops `sync --once` before any I/O: one line naming it, no secret, exit 2."""
    env = base_env(
        WISEFLOW_API_URL="http://127.0.0.1:9/v1",
        WISEFLOW_CLIENT_ID="bb-client",
        WISEFLOW_CLIENT_SECRET=CLIENT_SECRET,
        WISEFLOW_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SYNC_DATABASE=str(tmp_path / "never.sqlite3"),
    )

    def attempt(setting: tuple[str, str]) -> Result:
        return cli("sync", "--once", env={**env, setting[0]: setting[1]}, cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(attempt, BAD_SETTINGS))
    for (name, _), result in zip(BAD_SETTINGS, results, strict=True):
        assert result.code == EXIT_USAGE, name
        assert name in assert_one_line(result.err)
        assert_no_secret(result.out, result.err)
    assert not (tmp_path / "never.sqlite3").exists()


def test_run_refuses_an_unknown_trace_sampler_in_one_line(tmp_path: Path) -> None:
    """`run` with OTEL_TRACES_SAMPLER=bogus stops at once: one line naming the variable, exit 2."""
    env = base_env(
        WISEFLOW_API_URL="http://127.0.0.1:9/v1",
        WISEFLOW_API_KEY=API_KEY,
        SYNC_DATABASE=str(tmp_path / "never.sqlite3"),
        SYNC_HTTP_PORT=str(free_port()),
        OTEL_TRACES_SAMPLER="bogus",
    )
    result = cli("run", env=env, cwd=tmp_path)
    assert result.code == EXIT_USAGE
    assert "OTEL_TRACES_SAMPLER" in assert_one_line(result.err)
    assert_no_secret(result.out, result.err)


def test_half_a_credential_pair_is_refused_without_echoing_the_secret(tmp_path: Path) -> None:
    """A client secret without its id is one line naming WISEFLOW_CLIENT_ID; the secret is not shown."""
    env = base_env(WISEFLOW_CLIENT_SECRET=CLIENT_SECRET, SYNC_DATABASE=str(tmp_path / "x.sqlite3"))
    result = cli("sync", "--once", env=env, cwd=tmp_path)
    assert result.code == EXIT_USAGE
    assert "WISEFLOW_CLIENT_ID" in assert_one_line(result.err)
    assert_no_secret(result.out, result.err)


# --- sync --once, export, diagnose against the simulator ---


def sis_records(sim: Sim) -> list[dict[str, Any]]:
    """Deliveries the fake SIS received."""
    deliveries: list[dict[str, Any]] = sim.sis()["deliveries"]
    return deliveries


def test_sync_once_mirrors_exports_and_delivers_each_grade_once(sim: Sim, tmp_path: Path) -> None:
    """`sync --once` exits 0; export equals WISEflow's truth; the SIS got each grade once, keyed."""
    env = client_env(sim, tmp_path / "sync.sqlite3")
    before = len(sis_records(sim))
    first = cli("sync", "--once", env=env, cwd=tmp_path)
    assert (first.code, first.out) == (0, ""), first.err
    second = cli("sync", "--once", "--full", env=env, cwd=tmp_path)
    assert second.code == 0, second.err
    assert_no_secret(first.err, second.err)

    truth = http_json("GET", sim.root + "/_sim/truth")
    expected = sorted(
        (f["flow"]["id"], a["participantId"], a["grade"], a["adminGrade"], a["date"])
        for f in truth["flows"]
        for a in f["assessments"]
    )
    lines = cli("export", "grades", "--format", "jsonl", env=env, cwd=tmp_path).out.splitlines()
    records = [json.loads(line) for line in lines]
    assert all(list(r) == GRADE_FIELDS for r in records)
    assert expected == sorted(tuple(r[k] for k in GRADE_FIELDS) for r in records)
    csv = cli("export", "grades", "--format", "csv", env=env, cwd=tmp_path).out.splitlines()
    assert [",".join(GRADE_FIELDS)] == csv[:1]
    assert len(records) == len(csv) - 1

    delivered = sis_records(sim)[before:]
    assert sorted(expected) == sorted(tuple(d[k] for k in GRADE_FIELDS) for d in delivered)
    assert all(d["idempotencyKey"] for d in delivered)
    assert len(delivered) == len({d["idempotencyKey"] for d in delivered})
    assert not any(d["duplicate"] or d["conflict"] for d in delivered)


def test_diagnose_finds_a_request_by_its_x_trace_id(sim: Sim, tmp_path: Path) -> None:
    """`diagnose` with an X-Trace-Id the simulator answered shows that request; an unknown id exits 1."""
    env = client_env(sim, tmp_path / "diag.sqlite3")
    http("DELETE", sim.root + "/_sim/journal")
    assert cli("sync", "--once", env=env, cwd=tmp_path).code == 0
    journal = http_json("GET", sim.root + "/_sim/journal")["requests"]
    trace_id = next(e["traceId"] for e in journal if e["path"].endswith("/assessments"))
    found = cli("diagnose", trace_id, env=env, cwd=tmp_path)
    assert found.code == 0
    assert trace_id in found.out
    assert "/assessments" in found.out
    assert cli("diagnose", str(uuid.uuid4()), env=env, cwd=tmp_path).code == 1


def test_sync_once_gives_up_with_75_on_a_pause_longer_than_max_wait(sim: Sim, tmp_path: Path) -> None:
    """A 503 Retry-After over SYNC_MAX_WAIT and SYNC_RETRY_AFTER_MAX ends `sync --once` with 75, named."""
    env = client_env(sim, tmp_path / "maint.sqlite3", SYNC_MAX_WAIT="1", SYNC_RETRY_AFTER_MAX="1")
    sim.scenario({"maintenance": {"seconds": 30, "retry_after": 20}})
    try:
        result = cli("sync", "--once", env=env, cwd=tmp_path)
    finally:
        sim.scenario({"reset": True})
    assert result.code == EXIT_PAUSED
    last = result.err.strip().splitlines()[-1]
    assert "SYNC_MAX_WAIT" in last
    assert "503" in last


def test_sync_once_waits_out_a_short_maintenance_and_sends_nothing_before_retry_after(
    sim: Sim, tmp_path: Path
) -> None:
    """A 503 with Retry-After 1 s is waited out: exit 0, and no request reaches WISEflow inside that second."""
    env = client_env(sim, tmp_path / "short.sqlite3", SYNC_MAX_WAIT="30")
    http("DELETE", sim.root + "/_sim/journal")
    # Open until the command has been answered 503 at least once: a timed window could close before the
    # command's first request on a loaded machine, and then there would be nothing to wait out.
    sim.scenario({"maintenance": {"open": True, "retry_after": 1}})
    out, err = (tmp_path / "out.txt").open("w"), (tmp_path / "err.txt").open("w")
    proc = subprocess.Popen([*command(), "sync", "--once"], env=env, cwd=tmp_path, stdout=out, stderr=err)  # noqa: S603
    try:
        wait_until_blocking(lambda: 503 in journal_statuses(sim), what="a 503 answered to sync --once")
        sim.scenario({"maintenance": {"open": False}})
        code = proc.wait(timeout=PROCESS_DEADLINE)
    finally:
        stop(proc)
        out.close()
        err.close()
        sim.scenario({"reset": True})
    assert code == 0, (tmp_path / "err.txt").read_text()
    journal = http_json("GET", sim.root + "/_sim/journal")["requests"]
    times_503 = [e["time"] for e in journal if e["status"] == 503]
    for answered in times_503:
        after = [e["time"] for e in journal if e["time"] > answered]
        assert after
        assert min(after) - answered >= 1.0


def journal_statuses(sim: Sim) -> list[int]:
    """The statuses of every journalled /v1 request so far."""
    return [e["status"] for e in http_json("GET", sim.root + "/_sim/journal")["requests"]]


def test_inbox_commands_on_a_fresh_database(sim: Sim, tmp_path: Path) -> None:
    """With no dead letters `inbox dead-letters` says so (exit 0); replaying an unknown id exits 1."""
    env = client_env(sim, tmp_path / "inbox.sqlite3", SYNC_MAX_WAIT="5")
    assert cli("sync", "--once", env=env, cwd=tmp_path).code == 0
    listing = cli("inbox", "dead-letters", env=env, cwd=tmp_path)
    assert (listing.code, listing.out.strip()) == (0, "no dead letters")
    replay = cli("inbox", "replay", "424242", env=env, cwd=tmp_path)
    assert replay.code == 1
    assert "424242" in assert_one_line(replay.err)


def test_certify_answers_in_both_formats(sim: Sim, tmp_path: Path) -> None:
    """`certify`: json has a key per review section, md eight '## ' headings; no secret in either."""
    env = client_env(sim, tmp_path / "cert.sqlite3")
    as_json = cli("certify", "--format", "json", env=env, cwd=tmp_path)
    as_md = cli("certify", "--format", "md", env=env, cwd=tmp_path)
    assert (as_json.code, as_md.code) == (0, 0)
    sections = ["overview", "auth", "endpoints", "sync", "webhooks", "rate_limits", "logging", "errors"]
    assert list(json.loads(as_json.out)) == sections
    assert len([line for line in as_md.out.splitlines() if line.startswith("## ")]) == 8
    assert_no_secret(as_json.out, as_md.out, as_json.err, as_md.err)


def test_webhooks_ensure_dry_run_changes_nothing(sim: Sim, tmp_path: Path) -> None:
    """`webhooks ensure --dry-run` says what it would create and leaves WISEflow's subscriptions untouched."""
    env = client_env(sim, tmp_path / "hooks.sqlite3")
    url = "https://sync.example.edu/webhooks/wiseflow"
    result = cli("webhooks", "ensure", "--url", url, "--dry-run", env=env, cwd=tmp_path)
    assert result.code == 0, result.err
    assert url in result.out
    status, raw = http("GET", sim.api_url + "/webhooks", headers={"x-api-key": API_KEY, "X-Client-Name": "bb"})
    assert (status, json.loads(raw)["data"]) == (200, [])
    insecure = cli("webhooks", "ensure", "--url", "http://sync.example.edu/h", env=env, cwd=tmp_path)
    assert insecure.code == EXIT_USAGE


# --- run: health, metrics, status, webhooks, SIGTERM ---


def sign(raw: bytes) -> str:
    """The default scheme (docs/wiseflow.md): base64 HMAC-SHA256 of the raw body with the UTF-8 secret."""
    return base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).digest()).decode()


def event(sequence: int, name: str = "FINAL_GRADE", timestamp: int | None = None) -> bytes:
    """A webhook body as docs/wiseflow.md describes it."""
    body = {
        "id": str(uuid.uuid4()),
        "sequence": sequence,
        "event": name,
        "timestamp": int(time.time()) if timestamp is None else timestamp,
        "data": {"flowId": 1001, "participantId": 100100001},
    }
    return json.dumps(body).encode()


LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
METRIC_LINE = re.compile(rf"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{{{LABEL}(,{LABEL})*\}})? \S+$")


def assert_prometheus_text(text: str) -> None:
    """Every line is a HELP/TYPE comment or `name{labels} value` with a numeric value; TYPE precedes samples."""
    typed: set[str] = set()
    for line in text.strip().splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            typed.add(name)
        elif not line.startswith("# HELP "):
            assert METRIC_LINE.match(line), line
            float(line.rsplit(" ", 1)[1])
            assert re.split(r"[{ ]", line)[0] in typed or any(line.startswith(t + "_") for t in typed), line


def test_run_serves_probes_metrics_status_and_webhooks_then_exits_0_on_sigterm(
    sim: Sim, tmp_path: Path
) -> None:
    """`run`: probes, Prometheus text, JSON status, the contract's webhook answers, a prompt clean exit."""
    port = free_port()
    env = client_env(sim, tmp_path / "run.sqlite3", SYNC_HTTP_HOST="127.0.0.1", SYNC_HTTP_PORT=str(port))
    root = f"http://127.0.0.1:{port}"
    err_path = tmp_path / "run.err"
    with err_path.open("wb") as err, (tmp_path / "run.out").open("wb") as out:
        proc = subprocess.Popen([*command(), "run"], env=env, cwd=tmp_path, stdout=out, stderr=err)  # noqa: S603
    try:
        wait_http(root + "/readyz", proc)
        assert http("GET", root + "/livez")[0] == 200
        status, metrics = http("GET", root + "/metrics")
        assert status == 200
        assert_prometheus_text(metrics.decode())

        hook = root + "/webhooks/wiseflow"
        sequence = int(time.time() * 1000)
        good = event(sequence)
        signed = {"Content-Type": "application/json", "X-Wiseflow-Signature": sign(good)}
        assert http("POST", hook, good, signed)[0] == 200
        assert http("POST", hook, good, signed)[0] == 200
        other_delivery = event(sequence)
        assert http("POST", hook, other_delivery, {"X-Wiseflow-Signature": sign(other_delivery)})[0] == 200
        unknown = event(sequence + 1, "SOMETHING_NEW")
        assert http("POST", hook, unknown, {"X-Wiseflow-Signature": sign(unknown)})[0] == 200
        wrong = event(sequence + 2)
        assert http("POST", hook, wrong, {"X-Wiseflow-Signature": sign(b"other")})[0] == 401
        assert http("POST", hook, wrong)[0] == 401
        stale = event(sequence + 3, timestamp=int(time.time()) - 3600)
        assert http("POST", hook, stale, {"X-Wiseflow-Signature": sign(stale)})[0] == 401
        for malformed in (b"{not json", b"[1, 2]", b""):
            assert http("POST", hook, malformed, {"X-Wiseflow-Signature": sign(malformed)})[0] == 400
        huge = b'{"x": "' + b"a" * (4 * 1024 * 1024) + b'"}'
        assert http("POST", hook, huge, {"X-Wiseflow-Signature": sign(huge)})[0] == 413
        assert http("GET", hook)[0] == 405

        state = http_json("GET", root + "/status")
        hooks = state["webhooks"]
        assert (hooks["accepted"], hooks["duplicates"], hooks["unknown"]) == (1, 2, 1)
        assert hooks["rejected_total"] == 7

        proc.send_signal(signal.SIGTERM)
        # Within the pod's terminationGracePeriodSeconds (30): the contract's bound, not a speed figure.
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)
    logs = err_path.read_text()
    assert all(json.loads(line) for line in logs.splitlines() if line.strip())
    assert_no_secret(logs, (tmp_path / "run.out").read_text())
