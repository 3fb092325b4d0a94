"""`export grades` from a real SQLite mirror: exact field names, CSV quoting, an empty mirror."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from service.adapters.store import Store
from service.adapters.store.unit import SqliteUnitOfWork
from service.commands.export import export_grades
from service.core.records import Flow, GradeVersion

AWKWARD = GradeVersion(7, 70, 'B, "plus"\nsecond line', "Bestået; ok", 1700000000)
PLAIN = GradeVersion(7, 71, "12", None, None)


async def mirrored(tmp_path: Path, versions: list[GradeVersion]) -> str:
    path = tmp_path / "export.sqlite3"
    store = await Store.open(path)
    async with SqliteUnitOfWork(store).transaction() as unit:
        await unit.flows.save(Flow(7, "CONCLUDED"), 1.0)
        await unit.grades.write(versions, 1.0)
    await store.close()
    return str(path)


async def test_jsonl_has_exactly_the_five_fields(tmp_path: Path) -> None:
    """Each JSON line is {flowId, participantId, grade, adminGrade, date}, nulls kept as null."""
    out = io.StringIO()
    assert await export_grades(await mirrored(tmp_path, [AWKWARD, PLAIN]), "jsonl", out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [AWKWARD.payload(), PLAIN.payload()] == rows
    assert list(rows[0]) == ["flowId", "participantId", "grade", "adminGrade", "date"]


async def test_csv_quotes_commas_quotes_and_newlines(tmp_path: Path) -> None:
    """A grade with a comma, quotes and a newline survives a CSV round trip; None is an empty cell."""
    out = io.StringIO()
    assert await export_grades(await mirrored(tmp_path, [AWKWARD, PLAIN]), "csv", out) == 0
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["flowId", "participantId", "grade", "adminGrade", "date"]
    assert rows[1] == ["7", "70", 'B, "plus"\nsecond line', "Bestået; ok", "1700000000"]
    assert rows[2] == ["7", "71", "12", "", ""]


async def test_an_empty_mirror_exports_a_header_or_nothing(tmp_path: Path) -> None:
    """No grades: CSV is the header alone, JSON lines is empty; both succeed."""
    path = await mirrored(tmp_path, [])
    jsonl, csv_out = io.StringIO(), io.StringIO()
    assert await export_grades(path, "jsonl", jsonl) == 0
    assert await export_grades(path, "csv", csv_out) == 0
    assert jsonl.getvalue() == ""
    assert csv_out.getvalue() == "flowId,participantId,grade,adminGrade,date\n"
