"""JSON logs: one object a line, context fields kept, secrets masked, stderr looked up when writing."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from service.adapters.logs import configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_record_is_one_json_object_with_its_context_and_no_secret(restore_root: None) -> None:
    """Fields from `extra` are kept; sensitive names and bearer tokens are masked."""
    out = io.StringIO()
    configure_logging("INFO", out)
    logging.getLogger("t").warning(
        "call failed with Bearer abc.def",
        extra={
            "x_trace_id": "t-1",
            "status": 503,
            "client_secret": "s3cr3t",
            "headers": {"Authorization": "x"},
        },
    )
    entry = json.loads(out.getvalue())
    assert (entry["level"], entry["logger"], entry["x_trace_id"], entry["status"]) == (
        "WARNING",
        "t",
        "t-1",
        503,
    )
    assert entry["client_secret"] == "***"
    assert entry["headers"] == {"Authorization": "***"}
    assert entry["message"] == "call failed with Bearer ***"
    assert "s3cr3t" not in out.getvalue()


def test_stderr_is_looked_up_when_a_record_is_written(
    restore_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Configured once, the handler follows a later swap of sys.stderr instead of a closed old stream."""
    configure_logging("INFO")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("t").info("one")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("t").info("two")
    assert json.loads(second.getvalue())["message"] == "two"


def test_debug_level_never_logs_sql_parameters(restore_root: None) -> None:
    """LOG_LEVEL=DEBUG keeps aiosqlite's statement log (grades, participant ids) out of the output."""
    out = io.StringIO()
    configure_logging("DEBUG", out)
    logging.getLogger("aiosqlite").debug("executing INSERT INTO assessments VALUES (%s)", "101000019, '12'")
    logging.getLogger("service.sync").debug("a line of ours")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [entry["logger"] for entry in lines] == ["service.sync"]


def test_an_exception_is_logged_with_its_frames_and_nothing_it_carried(restore_root: None) -> None:
    """`exc_info` adds the traceback as code locations (innermost last); no source line or local value."""
    out = io.StringIO()
    configure_logging("INFO", out)

    def refresh(grade: str) -> None:
        raise ValueError("bad")

    try:
        refresh("secret-grade-A")
    except ValueError:
        logging.getLogger("t").exception("loop crashed")
    entry = json.loads(out.getvalue())
    assert entry["error_type"] == "ValueError"
    frames = entry["traceback"]
    assert frames[-1].endswith(" in refresh")
    assert frames[0].startswith(__file__)
    assert "secret-grade-A" not in out.getvalue()
    assert "raise ValueError" not in out.getvalue()
