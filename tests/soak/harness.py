"""The chaos soak's moving parts: a seeded plan, the real processes, and a tail of the simulator's journal.

Everything runs as the installed command in subprocesses on 127.0.0.1, as an operator would run it: one
`simulate --profile chaos`, a `run` that is SIGKILLed and restarted on the same database and port, and a
`sync --once --full` beside it. Each `run` instance gets its own `WISEFLOW_CLIENT_NAME` (`soak-run-N`), so
the simulator's journal tells the processes apart (their rate budgets are per process).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.soak.checks import client_name
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET = "soak-client", "soak-client-secret", "soak-webhook-secret"
RATE_PER_SECOND, RATE_PER_MINUTE = 20, 600
# The simulator's (WISEflow's) limits per credential, shared by every process of the soak.
SIM_PER_SECOND, SIM_PER_MINUTE = 200, 5000


@dataclass(frozen=True, slots=True)
class Plan:
    """When each fault starts (seconds into the chaos); drawn from the seed, so a run can be replayed."""

    seed: int
    seconds: float
    storm_at: float
    maintenance_at: tuple[float, float]
    full_sync_at: float
    kill_at: float  # one kill at a random moment (while the full sync runs, in all likelihood)
    # The other two: this long after the storm's first 429 (a pause must survive the kill), and after the
    # second maintenance window's first 503 (so must the breaker's wait).
    kill_delays: tuple[float, float]

    @classmethod
    def draw(cls, seed: int, seconds: float) -> Plan:
        """A plan for `seconds` of chaos: a 429 storm, two maintenance windows, three kills, one full sync."""
        rng = random.Random(seed)
        storm = seconds * rng.uniform(0.15, 0.25)
        first, second = seconds * rng.uniform(0.35, 0.45), seconds * rng.uniform(0.65, 0.75)
        full_sync, kill = seconds * rng.uniform(0.45, 0.6), seconds * rng.uniform(0.5, 0.6)
        return cls(
            seed, seconds, storm, (first, second), full_sync, kill, (rng.uniform(0, 0.5), rng.uniform(0, 0.5))
        )


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def base_env(**extra: str) -> dict[str, str]:
    """This environment without any WISEFLOW_/SYNC_/OTEL_/LOG_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WISEFLOW_", "SYNC_", "OTEL_", "LOG_"))}
    env.update(extra, WISEFLOW_CLIENT_ID=CLIENT_ID, WISEFLOW_CLIENT_SECRET=CLIENT_SECRET)
    env.update(WISEFLOW_WEBHOOK_SECRET=WEBHOOK_SECRET, LOG_LEVEL="WARNING")
    return env


async def spawn(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """Start `wiseflow-sync args...` with stdout and stderr in `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", *args, cwd=ROOT, env=env, stdout=out, stderr=out
        )


@dataclass
class Soak:
    """The processes of one soak and what they share: ports, database, logs, an HTTP session."""

    plan: Plan
    workdir: Path
    session: aiohttp.ClientSession
    sim_port: int = field(default_factory=free_port)
    service_port: int = field(default_factory=free_port)
    simulator: asyncio.subprocess.Process | None = None
    service: asyncio.subprocess.Process | None = None
    instances: int = 0
    kills: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    _killing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def sim_root(self) -> str:
        """The simulator's base URL."""
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def hook_url(self) -> str:
        """Where the simulator delivers webhooks: the service's endpoint."""
        return f"http://127.0.0.1:{self.service_port}/webhooks/wiseflow"

    @property
    def database(self) -> Path:
        """The one SQLite file every `run` instance and the full sync share."""
        return self.workdir / "soak.sqlite3"

    def service_env(self, client_name: str, **extra: str) -> dict[str, str]:
        """Settings of a service process against the simulator (polling often, reconciling concluded flows)."""
        return base_env(
            WISEFLOW_API_URL=self.sim_root + "/v1",
            WISEFLOW_CLIENT_NAME=client_name,
            SYNC_DATABASE=str(self.database),
            SYNC_SINK_URL=self.sim_root + "/_sis/grades",
            SYNC_HTTP_HOST="127.0.0.1",
            SYNC_HTTP_PORT=str(self.service_port),
            SYNC_POLL_INTERVAL="5",
            SYNC_RECONCILE_INTERVAL="10",
            SYNC_RATE_PER_SECOND=str(RATE_PER_SECOND),
            SYNC_RATE_PER_MINUTE=str(RATE_PER_MINUTE),
            **extra,
        )

    async def start_simulator(self, flows: int, participants: int) -> None:
        """`simulate --profile chaos` with webhooks to the service, redelivered every second."""
        args = ["simulate", "--port", str(self.sim_port), "--seed", str(self.plan.seed), "--profile", "chaos"]
        args += ["--webhook-url", self.hook_url, "--redelivery-interval", "1"]
        args += ["--flows", str(flows), "--participants", str(participants)]
        self.simulator = await spawn(args, base_env(), self.workdir / "simulate.log")
        await wait_until(self._simulator_answers, what="the simulator answering")

    async def _simulator_answers(self) -> bool:
        assert self.simulator is not None
        assert self.simulator.returncode is None, "the simulator exited"
        try:
            async with self.session.get(self.sim_root + "/_sim/scenario") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    async def start_service(self) -> None:
        """A new `run` instance on the shared database and port."""
        self.instances += 1
        name = f"soak-run-{self.instances}"
        self.service = await spawn(["run"], self.service_env(name), self.workdir / f"{name}.log")

    def check_service(self) -> None:
        """Note a `run` that ended without being killed (it must not)."""
        if self.service is not None and self.service.returncode is not None:
            self.crashes.append(f"soak-run-{self.instances} exited by itself with {self.service.returncode}")
            self.service = None

    async def kill_service(self, after_status: int | None = None, delay: float = 0.0) -> None:
        """SIGKILL the running instance once it serves (if asked, `delay` after it was answered `after_status`).

        A kill before the process has even started serving would test little: each instance is first given
        time to come up. Then the next instance starts at once, on the same database and port.
        """
        async with self._killing:
            self.check_service()
            if self.service is None:
                await self.start_service()
                return
            name = f"soak-run-{self.instances}"
            await self.wait_ready()
            when = "at a random moment"
            if after_status is not None:
                when = await self._until_answered(name, after_status)
                await asyncio.sleep(delay)  # the plan's moment of the kill, not a synchronisation
            self.check_service()
            if self.service is not None:
                self.service.send_signal(signal.SIGKILL)
                await self.service.wait()
                self.kills.append(f"{name} {when}")
            await self.start_service()

    async def wait_ready(self) -> None:
        """Wait until the running instance serves (`/readyz` 200)."""
        await wait_until(self._service_ready, what=f"soak-run-{self.instances} ready", within=120)

    async def _service_ready(self) -> bool:
        self.check_service()
        if self.service is None:
            return True  # it died by itself: noted, nothing to wait for
        try:
            async with self.session.get(f"http://127.0.0.1:{self.service_port}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def _until_answered(self, name: str, status: int, within: float = 12.0) -> str:
        """Wait until `name` is answered `status` (or `within` passes); says which happened."""
        since = time.time()  # the simulator runs on this machine's clock

        async def answered() -> bool:
            lines = (await self.sim("GET", f"/_sim/journal?since={since!r}"))["requests"]
            return any(line["status"] == status and client_name(line) == name for line in lines)

        try:
            await wait_until(answered, what=f"a {status} answered to {name}", within=within, every=0.05)
        except AssertionError:
            return f"with no {status} within {within:g} s"
        return f"just after a {status}"

    async def full_sync(self) -> asyncio.subprocess.Process:
        """`sync --once --full` in a second process beside the service."""
        env = self.service_env("soak-sync-full", SYNC_MAX_WAIT="300")
        return await spawn(["sync", "--once", "--full"], env, self.workdir / "sync-full.log")

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """Run a short command against the shared database; (exit code, stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", *args, cwd=ROOT, env=self.service_env("soak-cli"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        return process.returncode or 0, out.decode(), err.decode()

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the simulator's controls (or the fake SIS); its JSON answer."""
        async with self.session.request(method, self.sim_root + path, json=body) as response:
            assert response.status == 200, f"{method} {path} -> {response.status}"
            return await response.json()

    async def service_status(self) -> dict[str, Any] | None:
        """The running instance's `/status`, or None while it is not answering."""
        try:
            async with self.session.get(f"http://127.0.0.1:{self.service_port}/status") as response:
                return dict(await response.json()) if response.status == 200 else None
        except aiohttp.ClientError:
            return None

    async def stop(self) -> None:
        """Kill whatever still runs (the test stops the service itself when it can)."""
        for process in (self.service, self.simulator):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()


class JournalTail:
    """Copies the simulator's journal as it grows, so nothing is lost to its size bound over a long soak."""

    OVERLAP = 60.0  # lines are appended when answered, so one may be older than the newest already seen

    def __init__(self, soak: Soak) -> None:
        self._soak = soak
        self.lines: dict[str, dict[str, Any]] = {}

    async def fetch(self) -> None:
        """Take every line newer than the last seen (less the overlap); the trace id tells repeats apart."""
        since = max((line["time"] for line in self.lines.values()), default=0.0) - self.OVERLAP
        answer = await self._soak.sim("GET", f"/_sim/journal?since={since!r}")
        for line in answer["requests"]:
            self.lines[line["traceId"]] = line

    async def follow(self, every: float = 2.0) -> None:
        """Fetch forever (cancel to stop)."""
        while True:
            await self.fetch()
            await asyncio.sleep(every)  # the pace of the copy, not a synchronisation
