"""The one way to reach WISEflow: every command's client comes from here, so every request is admitted alike.

    wiseflow_client(settings, clock, ...)       the client: its gate reads and saves the pause in the
                                                database in use, its requests go to that database's journal
                                                (`app.open_service` builds the one of `run`, `sync --once`
                                                and `demo` with it)
    command_client(settings, command, ...)      for the one-shot commands (`webhooks ensure`, `certify`,
                                                `preflight`): the database if there is one, and the saved
                                                pause read before the first request

Which database a command uses, and how:

- `run`, `sync --once`, `demo`: their own, opened (and created) by `app.open_service`;
- `webhooks ensure`, `certify`: SYNC_DATABASE when the file exists: the pause is read and saved there, the
  requests journalled (`diagnose` finds them); without one, none is created and the pause is kept in memory;
- `preflight`: an existing SYNC_DATABASE, read-only: the saved pause is honoured, nothing is written (a
  pause WISEflow asks it for holds in its memory only).

A fresh command process meets the saved pause before its first request: it waits it out while that fits
within SYNC_MAX_WAIT (an operator's `pause clear` ends the wait early), else it ends with `WiseflowPaused`
(exit 75, one line naming the pause) having sent nothing. `certify` does not wait at all (`wait=False`):
its one request is optional, so a pause is answered like an unavailable WISEflow.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
from opentelemetry import trace

from service import __version__
from service.adapters.metrics import ServiceMetrics
from service.adapters.store import Store
from service.adapters.store.journal import JournalWriter
from service.adapters.store.pause import ReadOnlyPauseStore, SqlitePauseStore
from service.adapters.wiseflow.client import WiseflowClient, log_transition
from service.adapters.wiseflow.records import OnRequest, RequestRecord
from service.core.backoff import Random
from service.core.breaker import Transition
from service.core.clock import Clock, SystemClock
from service.core.ports import PauseStore
from service.errors import WiseflowPaused
from service.settings import Settings


def wiseflow_client(
    settings: Settings,
    clock: Clock,
    *,
    pause_store: PauseStore | None,
    saves_pauses: bool = True,
    journal: JournalWriter | None = None,
    metrics: ServiceMetrics | None = None,
    session: aiohttp.ClientSession | None = None,
    rng: Random | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    on_pause_lifted: Callable[[], None] | None = None,
) -> WiseflowClient:
    """The client of a process: its pauses in `pause_store`, its requests to `journal` and `metrics`."""

    def on_transition(transition: Transition) -> None:
        log_transition(transition)
        if metrics is not None:
            metrics.observe_transition(transition)

    return WiseflowClient(
        settings,
        session,
        clock,
        rng or random.Random(),  # noqa: S311 - jitter, not cryptography
        on_request=_observer(journal, metrics),
        on_transition=on_transition,
        tracer=trace.get_tracer("service.adapters.wiseflow", __version__, tracer_provider=tracer_provider),
        # Saved when the 429 or 503 arrives, before the next request leaves; read before each one leaves.
        pause_store=pause_store,
        saves_pauses=saves_pauses,
        on_pause_lifted=on_pause_lifted,
    )


def _observer(journal: JournalWriter | None, metrics: ServiceMetrics | None) -> OnRequest:
    """The client's request hook: every request that left goes to the journal and the metrics."""

    def observe(record: RequestRecord) -> None:
        if journal is not None:
            journal.record(record)
        if metrics is not None:
            metrics.observe_request(record)

    return observe


@asynccontextmanager
async def command_client(
    settings: Settings,
    command: str,
    *,
    read_only: bool = False,
    wait: bool = True,
    clock: Clock | None = None,
) -> AsyncIterator[WiseflowClient]:
    """A one-shot command's client, past the saved pause (see the module docstring); closed on leaving.

    `read_only`: the database is only read (`preflight`). `wait` False: a pause in force raises
    `WiseflowPaused` at once instead of being waited out (`certify`).
    """
    clock = clock or SystemClock()
    async with AsyncExitStack() as stack:  # closed in reverse: the client, then the journal, then the store
        pause_store, journal = await _database(settings, clock, stack, read_only=read_only)
        client = wiseflow_client(
            settings, clock, pause_store=pause_store, saves_pauses=not read_only, journal=journal
        )
        await stack.enter_async_context(client)
        await _past_the_saved_pause(client, settings, command, wait=wait)
        yield client


async def _database(
    settings: Settings, clock: Clock, stack: AsyncExitStack, *, read_only: bool
) -> tuple[PauseStore | None, JournalWriter | None]:
    """The pause store and journal of SYNC_DATABASE when the file exists (none is ever created here)."""
    if not Path(settings.database).is_file():  # noqa: ASYNC240 - one stat before opening
        return None, None
    if read_only:
        reader = await ReadOnlyPauseStore.open(settings.database)
        stack.push_async_callback(reader.close)
        return reader, None
    store = await Store.open(settings.database)
    stack.push_async_callback(store.close)
    journal = JournalWriter(store)
    stack.push_async_callback(journal.close)  # writes what the client's requests left in its buffer
    return SqlitePauseStore(store, clock), journal


async def _past_the_saved_pause(
    client: WiseflowClient, settings: Settings, command: str, *, wait: bool
) -> None:
    """Wait out what is left of a saved pause (logged: `wiseflow.pause_restored`), or raise `WiseflowPaused`."""
    remaining = await client.pauses.restore()
    saved = client.pauses.restored
    if remaining <= 0 or saved is None:
        return
    if wait and remaining <= settings.max_wait:
        await client.pauses.sleep(remaining)  # returns early when an operator clears it
        return
    limit = "paused" if not wait else f"paused longer than SYNC_MAX_WAIT ({settings.max_wait:g} s)"
    message = (
        f"{limit}: WISEflow's saved pause ({saved.reason}) has {remaining:.1f} s left; nothing was sent, "
        "run it again then (`wiseflow-sync pause show` says until when)"
    )
    raise WiseflowPaused(command, message, reason=saved.reason, remaining=remaining)
