"""`wiseflow-sync simulate`: bad flags exit 2 with one line; the server runs until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest

from service.cli import build_parser, main
from service.commands.simulate import config_from_args
from tests.waiting import PROCESS_DEADLINE


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--port", "abc"],
        ["simulate", "--port", "70000"],
        ["simulate", "--profile", "stormy"],
        ["simulate", "--flows", "0"],
        ["simulate", "--webhook-scheme", "md5"],
        ["simulate", "--redelivery-interval", "0"],
        ["simulate", "--redelivery-interval", "soon"],
        ["simulate", "--redelivery-interval", "nan"],
        ["simulate", "--shapes", "openapi"],
    ],
)
def test_bad_flags_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse errors are one line on stderr and exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv, env={})
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["ftp://example.org", "http://", "not a url"])
def test_bad_setting_exits_2_with_one_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A webhook URL the config refuses (not http(s), or without a host) is one line and exit code 2."""
    assert main(["simulate", "--webhook-url", url], env={}) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "webhook_url" in err[0]


def test_bad_log_level_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """LOG_LEVEL=LOUD is one line naming LOG_LEVEL and exit code 2, not a traceback."""
    assert main(["simulate"], env={"LOG_LEVEL": "LOUD"}) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "LOG_LEVEL" in err[0]


def test_redelivery_interval_flag_reaches_the_config() -> None:
    """--redelivery-interval 0.5 sets the simulator's redelivery interval; without it, WISEflow's 900 s."""
    parser = build_parser()
    fast = config_from_args(parser.parse_args(["simulate", "--redelivery-interval", "0.5"]), {})
    default = config_from_args(parser.parse_args(["simulate"]), {})
    assert (fast.redelivery_interval, default.redelivery_interval) == (0.5, 900.0)


def test_shapes_flag_reaches_the_config() -> None:
    """--shapes schema gives the schema's own envelopes; the default is the OpenAPI examples' shape."""
    parser = build_parser()
    schema = config_from_args(parser.parse_args(["simulate", "--shapes", "schema"]), {})
    default = config_from_args(parser.parse_args(["simulate"]), {})
    assert (schema.shapes, default.shapes) == ("schema", "examples")


@pytest.mark.slow
async def test_simulate_serves_until_sigterm() -> None:
    """The command serves /v1 with the environment's API key and exits 0 on SIGTERM."""
    env = {"WISEFLOW_API_KEY": "cli-key", "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "simulate", "--port", "0", "--seed", "3",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(PROCESS_DEADLINE):
            line = (await proc.stdout.readline()).decode()
        url = line.split()[3]  # "WISEflow simulator on http://127.0.0.1:PORT/v1 (...)"
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/license/info", headers={"x-api-key": "cli-key"}) as resp:
                assert resp.status == 200
            async with session.get(url + "/license/info", headers={"x-api-key": "demo-api-key"}) as resp:
                assert resp.status == 401
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):  # the pod's grace period
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
