"""`preflight` against the simulator: a clean pass, and each assumption broken in turn, with its evidence."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.preflight import Report, render, run_preflight
from service.settings import load_settings
from tests.conftest import SimFactory, SimHandle

CLIENT_SECRET = "pf-client-secret-0123456789"
API_KEY = "pf-api-key-0123456789"
WEBHOOK_SECRET = "pf-webhook-secret-0123456789"
# A base64 HMAC-SHA256 (44 characters) and an opaque token (43 URL-safe characters), whole words only.
_SIGNATURE = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=")
_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
NOT_PROVOKABLE = {"webhook_redelivery", "maintenance"}


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def sim(make_simulator: SimFactory) -> SimHandle:
    """A calm simulator whose credentials are distinctive strings (so a leak would be found)."""
    return await make_simulator(client_secret=CLIENT_SECRET, api_key=API_KEY)


def env_for(sim: SimHandle, port: int, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a service pointed at `sim`, listening on `port` of loopback."""
    return {
        "WISEFLOW_API_URL": sim.api_url,
        "WISEFLOW_CLIENT_ID": sim.config.client_id,
        "WISEFLOW_CLIENT_SECRET": CLIENT_SECRET,
        "WISEFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WISEFLOW_CLIENT_NAME": "preflight-tests",
        "SYNC_HTTP_HOST": "127.0.0.1",
        "SYNC_HTTP_PORT": str(port),
        "SYNC_DATABASE": str(tmp_path / "never.sqlite3"),
        **extra,
    }


async def preflight(sim: SimHandle, tmp_path: Path, *, public: bool = True, **extra: str) -> dict[str, Any]:
    """Run the preflight in-process; check both renderings hold no secret; the checks by name."""
    port = free_port()
    settings = load_settings(env_for(sim, port, tmp_path, **extra))
    url = f"http://127.0.0.1:{port}/webhooks/wiseflow" if public else None
    report = await run_preflight(settings, url, delivery_wait=5.0)
    assert_no_secret(render(report, "md") + render(report, "json"))
    assert sim.state.subscriptions == {}, "the temporary subscription is always deleted"
    assert not (tmp_path / "never.sqlite3").exists(), "the service's database is never created"
    return {"report": report, **{c.name: c for c in report.checks}}


def assert_no_secret(text: str) -> None:
    """No configured secret, no token, no signature value in `text`."""
    for secret in (CLIENT_SECRET, API_KEY, WEBHOOK_SECRET):
        assert secret not in text
    assert _SIGNATURE.findall(text) == []
    assert _TOKEN.findall(text) == []


def statuses(report: Report) -> dict[str, str]:
    """Each check's status by name."""
    return {c.name: c.status for c in report.checks}


async def test_a_clean_run_passes_every_check_and_touches_nothing(sim: SimHandle, tmp_path: Path) -> None:
    """Against a faithful WISEflow every check passes but the two no preflight can provoke; reads only;
    every check is explained in docs/wiseflow.md."""
    found = await preflight(sim, tmp_path)
    report: Report = found["report"]
    assert report.passed
    assert {n for n, s in statuses(report).items() if s != "passed"} == NOT_PROVOKABLE
    assert "expires_in 3599 s" in found["token_lifetime"].detail
    assert "X-Client-Name `preflight-tests`" in found["credentials"].detail
    assert "within WISEFLOW_WEBHOOK_TOLERANCE=300 s" in found["webhook_timestamp"].detail
    assert "X-Wiseflow-Signature: <masked, 44 chars>" in found["webhook_delivery"].detail
    docs = (Path(__file__).parents[2] / "docs" / "wiseflow.md").read_text(encoding="utf-8")
    for check in report.checks:
        endpoint = check.name.startswith("endpoint ")
        assert (check.name.split(" ")[-1] if endpoint else f"[`{check.name}`]") in docs, check.name
    sent = {(r["method"], re.sub(r"/\d+", "/{id}", r["path"])) for r in await sim.journal()}
    writes = {(m, p) for m, p in sent if m in ("PUT", "DELETE") or (m == "POST" and "webhooks" in p)}
    assert writes == {
        ("POST", "/v1/webhooks"),
        ("PUT", "/v1/webhooks/{id}"),
        ("POST", "/v1/webhooks/{id}/test"),
        ("DELETE", "/v1/webhooks/{id}"),
    }


@pytest.mark.parametrize("shapes", ["examples", "schema"])
async def test_success_envelopes_pass_as_the_examples_show_them_and_in_the_schema_s_form(
    sim: SimHandle, tmp_path: Path, shapes: str
) -> None:
    """`"error": null` / `"data": null` on success (the OpenAPI examples, the simulator's default) and the
    schema's own form (those parts left out) both give a clean preflight, every endpoint validated."""
    if shapes != "examples":
        await sim.scenario({"shapes": shapes})
    async with sim.session.get(sim.api_url + "/webhooks", headers=sim.auth_headers()) as resp:
        assert ("error" in await resp.json()) is (shapes == "examples")
    found = await preflight(sim, tmp_path)
    endpoints = {n: c for n, c in found.items() if n.startswith("endpoint ")}
    assert len(endpoints) == 12
    assert {n: c.status for n, c in endpoints.items() if c.status != "passed"} == {}
    assert found["report"].passed


async def test_without_a_public_url_the_webhook_checks_say_why_they_were_skipped(
    sim: SimHandle, tmp_path: Path
) -> None:
    """No --public-url: the webhook checks and writes are skipped naming the flag; nothing is written."""
    found = await preflight(sim, tmp_path, public=False)
    assert found["report"].passed
    assert found["webhook_signature"].status == "skipped"
    assert "--public-url" in found["webhook_signature"].detail
    assert found["endpoint POST /webhooks"].status == "skipped"
    assert [r for r in await sim.journal() if r["method"] in ("PUT", "DELETE")] == []


async def test_a_wrong_secret_is_reported_with_the_header_that_looks_like_a_signature(
    sim: SimHandle, tmp_path: Path
) -> None:
    """WISEflow signing with another secret: the signature check fails, naming the signature-like header."""
    await sim.scenario({"webhook_signing_secret": "another-secret"})
    found = await preflight(sim, tmp_path)
    check = found["webhook_signature"]
    assert (found["report"].passed, check.status) == (False, "failed")
    assert "header X-Wiseflow-Signature did not verify it (bad_signature)" in check.detail
    assert "X-Wiseflow-Signature (base64 SHA-256 digest)" in check.detail
    assert found["webhook_body"].status == "passed"


async def test_a_signature_under_another_header_names_the_setting_to_change(
    sim: SimHandle, tmp_path: Path
) -> None:
    """The signature under X-Hub-Signature: which header verified it, and the setting that fixes it."""
    await sim.scenario({"webhook_signature_header": "X-Hub-Signature"})
    check = (await preflight(sim, tmp_path))["webhook_signature"]
    assert check.status == "failed"
    assert "did not verify it (missing_signature)" in check.detail
    assert "verifies as scheme wiseflow, header X-Hub-Signature" in check.detail
    assert "WISEFLOW_WEBHOOK_SIGNATURE_HEADER=X-Hub-Signature" in check.detail


async def test_a_standard_webhooks_delivery_names_the_scheme_to_set(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """Configured for the default scheme but signed the Standard Webhooks way: the fix is the scheme."""
    sim = await make_simulator(client_secret=CLIENT_SECRET, api_key=API_KEY, webhook_scheme="standard")
    check = (await preflight(sim, tmp_path))["webhook_signature"]
    assert check.status == "failed"
    assert "set WISEFLOW_WEBHOOK_SCHEME=standard" in check.detail


async def test_a_body_without_sequence_fails_with_the_parser_s_reason(sim: SimHandle, tmp_path: Path) -> None:
    """No `sequence` in the body: the parser's reason and why the field matters."""
    await sim.scenario({"webhook_omit": ["sequence"]})
    found = await preflight(sim, tmp_path)
    check = found["webhook_body"]
    assert check.status == "failed"
    assert "(missing_sequence)" in check.detail
    assert "missing: sequence (the inbox deduplicates on it)" in check.detail
    assert found["webhook_signature"].status == "passed"


async def test_a_stale_timestamp_fails_with_the_skew(sim: SimHandle, tmp_path: Path) -> None:
    """A timestamp an hour old: the skew in seconds against the configured window."""
    await sim.scenario({"webhook_timestamp_offset": -3600})
    check = (await preflight(sim, tmp_path))["webhook_timestamp"]
    assert check.status == "failed"
    assert re.search(r"is 360[01] s behind this machine's clock", check.detail)
    assert "outside WISEFLOW_WEBHOOK_TOLERANCE=300 s" in check.detail


async def test_refused_client_credentials_fail_and_nothing_else_is_asked(
    sim: SimHandle, tmp_path: Path
) -> None:
    """A wrong client secret: the token endpoint's refusal as evidence; every other check skipped."""
    found = await preflight(sim, tmp_path, WISEFLOW_CLIENT_SECRET="not-the-secret")
    report: Report = found["report"]
    assert not report.passed
    assert "POST /oauth2/token answered 400 (invalid_client)" in found["credentials"].detail
    assert {s for n, s in statuses(report).items() if n != "credentials"} == {"skipped"}
    assert [r["path"] for r in await sim.journal()] == ["/v1/oauth2/token"]


async def test_a_refused_api_key_fails_on_license_info(sim: SimHandle, tmp_path: Path) -> None:
    """A wrong x-api-key: GET /license/info's 401 as evidence."""
    found = await preflight(
        sim, tmp_path, WISEFLOW_CLIENT_ID="", WISEFLOW_CLIENT_SECRET="", WISEFLOW_API_KEY="wrong-key"
    )
    assert found["credentials"].status == "failed"
    assert "GET /license/info answered 401" in found["credentials"].detail
    assert "wrong-key" not in render(found["report"], "md")


async def test_rate_limits_lower_than_the_budgets_fail_naming_the_setting(
    sim: SimHandle, tmp_path: Path
) -> None:
    """WISEflow stating 500/min against SYNC_RATE_PER_MINUTE=1000: the budget check fails with both figures."""
    await sim.scenario({"rate_per_minute": 500})
    found = await preflight(sim, tmp_path)
    assert "X-RateLimit-Minute-Limit: 500" in found["rate_limit_headers"].detail
    check = found["rate_budgets"]
    assert check.status == "failed"
    assert "SYNC_RATE_PER_MINUTE=1000 exceeds the stated 500/minute" in check.detail
    assert "SYNC_RATE_PER_SECOND=20 within 200/second" in check.detail


async def test_a_taken_port_fails_the_delivery_and_creates_no_subscription(
    sim: SimHandle, tmp_path: Path
) -> None:
    """SYNC_HTTP_PORT in use (e.g. by `run`): said so, and no subscription is made."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings(env_for(sim, port, tmp_path))
        report = await run_preflight(settings, f"http://127.0.0.1:{port}/hook", delivery_wait=1.0)
    found = {c.name: c for c in report.checks}
    assert found["webhook_delivery"].status == "failed"
    assert f"could not listen on 127.0.0.1:{port}" in found["webhook_delivery"].detail
    assert [r for r in await sim.journal() if "webhooks" in r["path"] and r["method"] != "GET"] == []


async def test_the_command_prints_json_and_exits_by_the_verdict(sim: SimHandle, tmp_path: Path) -> None:
    """`python -m service preflight --format json`: the contract's document, exit 0; a broken budget exits 1."""
    port = free_port()
    env = {**os.environ, **env_for(sim, port, tmp_path)}
    url = f"http://127.0.0.1:{port}/webhooks/wiseflow"
    code, out, err = await _command(env, "--format", "json", "--public-url", url)
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"passed", "checks"}
    assert doc["passed"] is True
    assert all(set(c) == {"name", "status", "detail"} for c in doc["checks"])
    assert_no_secret(out + err)
    await sim.scenario({"rate_per_second": 10})
    code, out, err = await _command(env)
    assert code == 1
    assert "| rate_budgets | failed | SYNC_RATE_PER_SECOND=20 exceeds the stated 10/second" in out
    assert_no_secret(out + err)


async def _command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "preflight", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_deliveries_other_than_the_test_event_are_turned_away_for_redelivery(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Real deliveries reaching the preflight's port get 503 + Retry-After (WISEflow redelivers them to the
    service later); only the test event, whose URL carries the preflight's marker, is captured and judged."""
    await sim.scenario({"latency_ms": 200})  # a listening window of a second or more for the stranger
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/wiseflow"
    answers: list[tuple[int, str | None]] = []
    done = asyncio.Event()

    async def real_deliveries() -> None:
        """What the institution's own subscription would send meanwhile: an event for the same URL."""
        async with aiohttp.ClientSession() as session:
            while not done.is_set():
                with contextlib.suppress(aiohttp.ClientConnectionError):  # not listening yet, or any more
                    async with session.post(url, data=b'{"sequence": 7, "event": "FINAL_GRADE"}') as reply:
                        answers.append((reply.status, reply.headers.get("Retry-After")))
                await asyncio.sleep(0.02)  # the pace of the deliveries, not a wait for a state

    stranger = asyncio.create_task(real_deliveries())
    try:
        report = await run_preflight(load_settings(env_for(sim, port, tmp_path)), url, delivery_wait=5.0)
    finally:
        done.set()
        await stranger
    found = {c.name: c for c in report.checks}
    assert (found["webhook_delivery"].status, found["webhook_signature"].status) == ("passed", "passed")
    assert "answered 503 (WISEflow redelivers them)" in found["webhook_delivery"].detail
    assert answers
    assert set(answers) == {(503, "120")}
