"""The figures the alerts read, from a live service's /metrics after real runs against the simulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from service.app import SERVICE, build_app
from service.settings import load_settings
from tests.conftest import SimHandle


async def scrape(client: TestClient[Any, Any]) -> dict[str, float]:
    """The unlabelled samples of one `/metrics` scrape, by name."""
    text = await (await client.get("/metrics")).text()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


async def test_alert_figures_follow_runs_and_the_waiting_grades(simulator: SimHandle, tmp_path: Path) -> None:
    """An ok run: streak 0, its duration, grades queued now (no deliverer); maintenance lengthens the streak."""
    env = {
        "WISEFLOW_API_URL": simulator.api_url,
        "WISEFLOW_CLIENT_ID": simulator.config.client_id,
        "WISEFLOW_CLIENT_SECRET": simulator.config.client_secret,
        "WISEFLOW_WEBHOOK_SECRET": simulator.config.webhook_secret,
        "SYNC_DATABASE": str(tmp_path / "s.sqlite3"),
        "SYNC_SINK_URL": simulator.sis_url,
    }
    started = time.time()
    async with TestClient(TestServer(build_app(load_settings(env), start=False), host="127.0.0.1")) as client:
        service = client.server.app[SERVICE]
        assert (await scrape(client))["wiseflow_outbox_oldest_pending_timestamp_seconds"] == 0
        ok = await service.runner.run(False)
        assert ok.outcome == "ok"
        got = await scrape(client)
        assert got["wiseflow_sync_consecutive_failures"] == 0
        assert got["wiseflow_sync_last_run_duration_seconds"] == ok.duration
        # The loops are not started, so nothing delivers: the queued grades wait, queued during the run.
        assert started <= got["wiseflow_outbox_oldest_pending_timestamp_seconds"] <= time.time()
        await simulator.scenario({"maintenance": {"seconds": 600, "retry_after": 300}})
        for _ in range(2):
            assert (await service.runner.run(False)).outcome == "paused"
        assert (await scrape(client))["wiseflow_sync_consecutive_failures"] == 2
