"""Sync until done or paused: resumes after WISEflow's pauses within the budget, stops at once on failure."""

from __future__ import annotations

from service.core.run_summary import RunSummary
from service.sync.until_done import DEFAULT_PAUSE, sync_until_done


class Runs:
    """Hands out the given outcomes one run at a time, recording `full` and the sleeps."""

    def __init__(self, *outcomes: tuple[str, float | None]) -> None:
        self.outcomes = list(outcomes)
        self.fulls: list[bool] = []
        self.slept: list[float] = []

    async def run(self, full: bool) -> RunSummary:
        self.fulls.append(full)
        outcome, retry_after = self.outcomes.pop(0)
        return RunSummary(len(self.fulls), outcome, reason=outcome, retry_after=retry_after, api_calls=3)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_paused_runs_resume_after_their_pause_until_one_is_ok() -> None:
    """Two pauses (with a Retry-After, then without) are waited out; `full` marks the first run only."""
    runs = Runs(("paused", 2.0), ("paused", None), ("ok", None))
    result = await sync_until_done(runs.run, full=True, max_wait=60.0, sleep=runs.sleep)
    assert (result.outcome, result.api_calls, result.waited) == ("ok", 9, 2.0 + DEFAULT_PAUSE)
    assert runs.fulls == [True, False, False]
    assert runs.slept == [2.0, DEFAULT_PAUSE]


async def test_a_pause_beyond_the_budget_ends_as_paused_without_sleeping_it() -> None:
    """A 120 s Retry-After against a 10 s budget: paused at once, the pause reported for the caller."""
    runs = Runs(("paused", 120.0))
    result = await sync_until_done(runs.run, max_wait=10.0, sleep=runs.sleep)
    assert (result.outcome, result.pause, runs.slept) == ("paused", 120.0, [])


async def test_a_failed_run_is_not_retried() -> None:
    """Refused credentials are not cured by waiting: the routine returns after the one run."""
    runs = Runs(("failed", None), ("ok", None))
    result = await sync_until_done(runs.run, max_wait=60.0, sleep=runs.sleep)
    assert (result.outcome, len(runs.fulls), runs.slept) == ("failed", 1, [])
