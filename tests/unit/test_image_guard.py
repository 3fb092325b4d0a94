"""In the production image (WISEFLOW_SYNC_IMAGE=1), the simulator-backed commands refuse unless asked."""

from __future__ import annotations

import argparse

import pytest

from service.cli import main
from service.commands import refused_in_image

IMAGE = {"WISEFLOW_SYNC_IMAGE": "1"}


@pytest.mark.parametrize("argv", [["simulate", "--port", "0"], ["demo", "--duration", "10"]])
def test_simulator_commands_refuse_in_the_image(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """One line naming the variable and the flag, exit 2, and nothing started."""
    assert main(argv, IMAGE) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "WISEFLOW_SYNC_IMAGE" in err
    assert "--allow-in-image" in err


@pytest.mark.parametrize(
    ("env", "allow", "refused"),
    [
        (IMAGE, False, True),
        (IMAGE, True, False),
        ({"WISEFLOW_SYNC_IMAGE": "0"}, False, False),
        ({}, False, False),
    ],
)
def test_the_flag_and_the_variable_decide(env: dict[str, str], allow: bool, refused: bool) -> None:
    """Outside the image nothing changes; inside it --allow-in-image lets the simulator start."""
    assert refused_in_image("simulate", argparse.Namespace(allow_in_image=allow), env) is refused


def test_the_flag_is_accepted_by_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse knows --allow-in-image on simulate and demo (a bad value elsewhere still exits 2)."""
    for command in ("simulate", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--allow-in-image", "--help"], IMAGE)
        assert exit_info.value.code == 0
        assert "--allow-in-image" in capsys.readouterr().out
