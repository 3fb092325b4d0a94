"""A sync against a WISEflow answering as the OpenAPI examples show it, and in the schemas' own form."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.commands.sync import open_engine
from tests.conftest import SimFactory
from tests.e2e.test_sync_simulator import ShiftedClock, assert_mirror_equals_truth, settings_for


@pytest.mark.parametrize("shapes", ["examples", "schema"])
async def test_a_sync_mirrors_the_truth_whichever_envelope_shape(
    make_simulator: SimFactory, tmp_path: Path, shapes: str
) -> None:
    """`"error": null` on every success (the examples) or those parts left out (the schema): the run is ok,
    every page followed (participants span two pages) and the mirror equals the truth."""
    world = await make_simulator(flows=12, participants=130, shapes=shapes)
    await world.advance({"grade_changes": 20, "paper_submissions": 5})
    async with open_engine(settings_for(world, tmp_path / "shapes.sqlite3"), ShiftedClock()) as engine:
        assert (await engine.poller.run_once()).outcome == "ok"
        await assert_mirror_equals_truth(engine, world)
