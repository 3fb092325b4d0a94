"""The task owner (`sync/jobs.py`) and the loop guard's failure logs, on virtual time: nothing swallowed.

Closing names what it cancelled and what overran the close timeout; a task that fails, while running or
on its way out, is logged; the guard logs each part of an exception group with its own traceback.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from service.errors import CircuitOpen
from service.sync.jobs import close_jobs, open_jobs
from service.sync.loops import MIN_RETRY_DELAY, guarded
from tests.virtual_time import run_virtual
from tests.waiting import wait_until


async def forever() -> None:
    """A loop that only ends when cancelled."""
    await asyncio.Event().wait()


async def stubborn() -> None:
    """A loop that, cancelled, goes on for a while: past any reasonable close timeout."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.sleep(60.0)
        raise


async def cleanup_fails() -> None:
    """A loop whose cleanup, once cancelled, raises: an error at close that must not be swallowed."""
    try:
        await asyncio.Event().wait()
    finally:
        raise LookupError("cleanup failed")


@pytest.fixture(autouse=True)
def capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every level, whatever an earlier test of the session left the root logger at."""
    caplog.set_level(logging.DEBUG)


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    """The captured records of one `event`."""
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def test_closing_cancels_every_task_and_names_them(caplog: pytest.LogCaptureFixture) -> None:
    """close_jobs cancels the loops at once (no waiting for them to end) and logs their names."""

    async def scenario() -> tuple[float, list[bool]]:
        jobs = open_jobs(close_timeout=3.0)
        started = [await jobs.spawn(forever(), name=name) for name in ("b-loop", "a-loop")]
        loop = asyncio.get_running_loop()
        before = loop.time()
        await close_jobs(jobs)
        return loop.time() - before, [job.closed for job in started]

    took, closed = run_virtual(scenario())
    assert took < 0.1
    assert closed == [True, True]
    (stopping,) = records(caplog, "tasks.stopping")
    assert stopping.tasks == ["a-loop", "b-loop"]  # type: ignore[attr-defined]
    assert records(caplog, "tasks.close_timeout") == []


def test_a_task_still_running_at_the_close_deadline_is_named(caplog: pytest.LogCaptureFixture) -> None:
    """A loop that does not stop within the close timeout is logged by name; close still returns in time."""

    async def scenario() -> float:
        jobs = open_jobs(close_timeout=3.0)
        await jobs.spawn(stubborn(), name="slow-loop")
        await jobs.spawn(forever(), name="quick-loop")
        await asyncio.sleep(0)  # let both start
        loop = asyncio.get_running_loop()
        before = loop.time()
        await close_jobs(jobs)
        return loop.time() - before

    took = run_virtual(scenario())
    assert took == pytest.approx(3.0, abs=1e-3)
    (overran,) = records(caplog, "tasks.close_timeout")
    assert (overran.task, overran.levelno) == ("slow-loop", logging.ERROR)  # type: ignore[attr-defined]


def test_a_task_that_fails_at_close_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """An error raised on a loop's way out is logged (it used to vanish in gather(return_exceptions=True))."""

    async def scenario() -> None:
        jobs = open_jobs()
        await jobs.spawn(cleanup_fails(), name="leaky-loop")
        await asyncio.sleep(0)
        await close_jobs(jobs)

    run_virtual(scenario())
    (failed,) = records(caplog, "tasks.failed")
    assert failed.task == "leaky-loop"  # type: ignore[attr-defined]
    assert failed.exc_info is not None
    assert isinstance(failed.exc_info[1], LookupError)


def test_a_task_that_dies_while_running_is_logged_when_it_dies(caplog: pytest.LogCaptureFixture) -> None:
    """A task that ends with an error is logged then, not only at close."""

    async def dies() -> None:
        raise KeyError("gone")

    async def scenario() -> int:
        jobs = open_jobs()
        job = await jobs.spawn(dies(), name="short-loop")
        await wait_until(lambda: job.closed, what="the failing task ended")
        logged = len(records(caplog, "tasks.failed"))
        await close_jobs(jobs)
        return logged

    assert run_virtual(scenario()) == 1
    (failed,) = records(caplog, "tasks.failed")
    assert (failed.task, failed.verdict) == ("short-loop", "blame_item")  # type: ignore[attr-defined]


def test_the_guard_logs_each_part_of_an_exception_group(caplog: pytest.LogCaptureFixture) -> None:
    """A TaskGroup's "4 sub-exceptions" become one record per part, each with its traceback and verdict."""
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            return  # restarted once: the guard returns

        async def bad_token() -> None:
            raise ValueError("Illegal header value")

        async def breaker_open() -> None:
            raise CircuitOpen("http://wiseflow", 10.0, "5 failures")

        async with asyncio.TaskGroup() as group:
            group.create_task(bad_token())
            group.create_task(breaker_open())

    async def scenario() -> float:
        loop_ = asyncio.get_running_loop()
        before = loop_.time()
        await guarded("outbox", loop)
        return loop_.time() - before

    waited = run_virtual(scenario())
    assert waited == pytest.approx(MIN_RETRY_DELAY, abs=1e-3)
    crashed = records(caplog, "loop.crashed")
    assert [(r.part, r.parts, r.verdict) for r in crashed] == [  # type: ignore[attr-defined]
        (1, 2, "blame_item"),
        (2, 2, "stop_and_wait"),
    ]
    assert {r.group for r in crashed} == {"ExceptionGroup: unhandled errors in a TaskGroup"}  # type: ignore[attr-defined]
    assert [type(r.exc_info[1]) for r in crashed if r.exc_info] == [ValueError, CircuitOpen]
    assert all(r.exc_info and r.exc_info[2] is not None for r in crashed)  # each its own traceback
    assert crashed[0].error == "unexpected data from WISEflow (ValueError)"  # type: ignore[attr-defined]


def test_the_guard_logs_a_lone_wait_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """A loop stopped by an open breaker is one WARNING line without a traceback, restarted after the pause."""
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise CircuitOpen("http://wiseflow", 120.0, "5 failures")

    async def scenario() -> float:
        loop_ = asyncio.get_running_loop()
        before = loop_.time()
        await guarded("poll", loop)
        return loop_.time() - before

    assert run_virtual(scenario()) == pytest.approx(120.0, abs=1e-3)
    (stopped,) = records(caplog, "loop.crashed")
    assert (stopped.levelno, stopped.exc_info, stopped.verdict) == (  # type: ignore[attr-defined]
        logging.WARNING,
        None,
        "stop_and_wait",
    )
    assert stopped.getMessage() == "background loop stopped; restarting"
