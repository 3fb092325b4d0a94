"""Machine tools some tests drive (Debian's `promtool` and `chromium`) and where tests keep artifacts.

A developer without a tool sees those tests skipped with the command that installs it; CI exports
`WISEFLOW_SYNC_REQUIRE_TOOLS=1` (.ci/run installs the packages first), so there a missing tool fails
instead of passing quietly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

import pytest

REQUIRE_TOOLS: Final = "WISEFLOW_SYNC_REQUIRE_TOOLS"
ARTIFACTS: Final = "WISEFLOW_SYNC_ARTIFACTS"


def require_tool(name: str, package: str, purpose: str) -> str:
    """The tool's path; absent, the test skips naming the install (or fails, under REQUIRE_TOOLS=1)."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = (
        f"{name} is not installed ({purpose}): `apt-get install {package}` on Debian, or `make tools` as root"
    )
    if os.environ.get(REQUIRE_TOOLS, "").strip() not in ("", "0"):
        pytest.fail(f"{message}; {REQUIRE_TOOLS} is set, so a missing tool is a failure")
    pytest.skip(message)


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Where a test keeps files for a person: $WISEFLOW_SYNC_ARTIFACTS/name, else a pytest tmp dir."""
    root = os.environ.get(ARTIFACTS)
    if not root:
        return tmp_path_factory.mktemp(name)
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path
