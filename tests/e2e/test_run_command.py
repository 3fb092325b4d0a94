"""`wiseflow-sync run` as a real process: ready, serving, graceful on SIGTERM; bad settings stop it at once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.conftest import SimFactory
from tests.e2e.test_service import service_env
from tests.waiting import PROCESS_DEADLINE, wait_until


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_service(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "run",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@asynccontextmanager
async def service_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`wiseflow-sync run` as a subprocess, killed at the end if the test did not stop it."""
    proc = await start_service(env)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: asyncio.subprocess.Process) -> str:
    """SIGTERM, wait for the exit (30 s at most), return stderr."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=PROCESS_DEADLINE)
    return stderr.decode()


async def wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    """Poll /readyz of a real process until it answers 200."""
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            assert proc.returncode is None, "the service exited before becoming ready"
            try:
                async with session.get(url) as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await wait_until(ready, what=f"{url} answering 200", within=PROCESS_DEADLINE)


async def test_run_serves_and_stops_gracefully_on_sigterm(make_simulator: SimFactory, tmp_path: Path) -> None:
    """The service becomes ready, accepts a webhook, and exits 0 soon after SIGTERM with its logs in JSON."""
    sim = await make_simulator()
    port = free_port()
    env = service_env(sim, tmp_path / "run.sqlite3", SYNC_HTTP_PORT=str(port), SYNC_HTTP_HOST="127.0.0.1")
    async with service_process(env) as proc:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/webhooks/wiseflow", data=b"{}") as response,
        ):
            assert response.status == 401  # unsigned: refused, and the process carries on
        stderr = await stop(proc)
    assert proc.returncode == 0
    lines = stderr.splitlines()
    assert any('"event":"service.started"' in line for line in lines)
    assert any('"event":"service.stopped"' in line for line in lines)
    assert sim.config.client_secret not in stderr


async def test_a_bad_setting_stops_startup_with_one_line(tmp_path: Path) -> None:
    """A malformed variable: exit 2 and one line on stderr naming it, without echoing secrets."""
    env = {
        "WISEFLOW_CLIENT_ID": "id",
        "WISEFLOW_CLIENT_SECRET": "s3cr3t-value",
        "SYNC_HTTP_PORT": "eighty",
        "SYNC_DATABASE": str(tmp_path / "x.sqlite3"),
    }
    proc = await start_service(env)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=PROCESS_DEADLINE)
    text = stderr.decode().strip()
    assert proc.returncode == 2
    assert text.count("\n") == 0
    assert "SYNC_HTTP_PORT" in text
    assert "s3cr3t-value" not in text


async def test_missing_credentials_stop_startup_with_one_line(tmp_path: Path) -> None:
    """No OAuth client and no API key: exit 2 naming WISEFLOW_CLIENT_ID."""
    env = {"SYNC_DATABASE": str(tmp_path / "x.sqlite3")}
    scrubbed = {k: v for k, v in os.environ.items() if not k.startswith("WISEFLOW_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "run",
        env={**scrubbed, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=PROCESS_DEADLINE)
    assert proc.returncode == 2
    assert "WISEFLOW_CLIENT_ID" in stderr.decode()
    assert stderr.decode().strip().count("\n") == 0


async def test_an_unusable_webhook_secret_stops_startup_with_one_line(
    make_simulator: SimFactory, tmp_path: Path
) -> None:
    """A whsec_ secret that is not base64 (standard scheme): exit 2 naming the variable, no hang, no value."""
    sim = await make_simulator()
    env = service_env(
        sim,
        tmp_path / "bad.sqlite3",
        WISEFLOW_WEBHOOK_SCHEME="standard",
        WISEFLOW_WEBHOOK_SECRET="whsec_not*base64!",
        SYNC_HTTP_PORT=str(free_port()),
    )
    async with service_process(env) as proc:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=PROCESS_DEADLINE)
    lines = [line for line in stderr.decode().splitlines() if "WISEFLOW_WEBHOOK_SECRET" in line]
    assert proc.returncode == 2
    assert len(lines) == 1
    assert "not*base64" not in stderr.decode()


async def test_a_compressed_webhook_is_refused_cleanly(make_simulator: SimFactory, tmp_path: Path) -> None:
    """A br or gzip body reaches the receiver undecoded and is answered 415 in JSON, never a text 400."""
    sim = await make_simulator()
    port = free_port()
    env = service_env(sim, tmp_path / "enc.sqlite3", SYNC_HTTP_PORT=str(port), SYNC_HTTP_HOST="127.0.0.1")
    async with service_process(env) as proc:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        async with aiohttp.ClientSession() as session:
            for encoding in ("br", "gzip", "zstd"):
                async with session.post(
                    f"http://127.0.0.1:{port}/webhooks/wiseflow",
                    data=b"\x1f\x8b garbage",
                    headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
                ) as response:
                    assert response.status == 415, encoding
                    assert response.content_type == "application/json"
        stderr = await stop(proc)
    assert '"level":"ERROR"' not in stderr


async def test_an_unusable_database_or_address_stops_run_with_one_line(tmp_path: Path) -> None:
    """A database path that is a directory, or a port already taken: exit 2, one line naming the variable."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cases = [
            ({"SYNC_DATABASE": str(tmp_path), "SYNC_HTTP_PORT": str(free_port())}, "SYNC_DATABASE"),
            (
                {"SYNC_DATABASE": str(tmp_path / "ok.sqlite3"), "SYNC_HTTP_PORT": str(busy)},
                "SYNC_HTTP_HOST/SYNC_HTTP_PORT",
            ),
        ]
        for extra, variable in cases:
            env = {"WISEFLOW_API_KEY": "k", "SYNC_HTTP_HOST": "127.0.0.1", **extra}
            async with service_process(env) as proc:
                _, stderr = await asyncio.wait_for(proc.communicate(), timeout=PROCESS_DEADLINE)
            errors = [line for line in stderr.decode().splitlines() if not line.startswith("{")]
            assert proc.returncode == 2
            assert len(errors) == 1, errors
            assert errors[0].startswith(f"wiseflow-sync: configuration error: {variable}:")
