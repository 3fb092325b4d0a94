"""`wiseflow-sync spec diff` as a process: exits 0/1/2, JSON and YAML documents, one line when unreadable."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from service.spec import SNAPSHOT_PATH
from tests.spec_docs import (
    Document,
    add_optional_assessment_field,
    drop_flow_endpoint,
    drop_search_state,
    drop_unused_endpoint,
    release,
)
from tests.waiting import PROCESS_DEADLINE

pytestmark = pytest.mark.slow


async def spec_diff(*args: str) -> tuple[int, str, str]:
    """Run `python -m service spec diff ARGS`; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "spec", "diff", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), PROCESS_DEADLINE)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def written(tmp_path: Path, document: Document, name: str) -> str:
    """`document` saved as JSON or YAML (by the name's suffix); its path."""
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_bytes(orjson.dumps(document))
    else:
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name", ["copy.json", "copy.yaml"])
async def test_an_identical_copy_exits_0_with_no_changes(tmp_path: Path, name: str) -> None:
    """The snapshot itself, as JSON and as YAML: exit 0, `{"breaking": false, "changes": []}`."""
    path = written(tmp_path, orjson.loads(SNAPSHOT_PATH.read_bytes()), name)
    code, out, err = await spec_diff(path, "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"breaking": False, "changes": []}


@pytest.mark.parametrize("name", ["next.json", "next.yaml"])
async def test_a_removed_field_the_service_reads_exits_1_naming_endpoint_and_field(
    tmp_path: Path, name: str
) -> None:
    """A release without the search records' `state`: exit 1; the breaking change names both."""
    code, out, _ = await spec_diff(written(tmp_path, release(drop_search_state), name), "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["breaking"] is True
    assert {
        "kind": "breaking",
        "endpoint": "POST /flows/search",
        "detail": "answer field `data[].state` is gone; the service reads it",
    } in doc["changes"]


async def test_a_removed_endpoint_the_service_calls_exits_1(tmp_path: Path) -> None:
    """A release without `GET /flow/{flowId}`: exit 1, and the Markdown report says so."""
    code, out, _ = await spec_diff(written(tmp_path, release(drop_flow_endpoint), "next.yaml"))
    assert code == 1
    assert "**breaking**" in out
    assert "| breaking | GET /flow/{flowId} | gone from the document; the service calls it for:" in out


async def test_unused_changes_exit_0_and_are_reported(tmp_path: Path) -> None:
    """An unused endpoint gone and an optional field added: exit 0, reported as unused and compatible."""
    document = release(drop_unused_endpoint, add_optional_assessment_field)
    code, out, _ = await spec_diff(written(tmp_path, document, "next.json"), "--format", "json")
    assert code == 0
    changes = json.loads(out)["changes"]
    assert {"kind": "unused", "endpoint": "GET /license/logs",
            "detail": "gone from the document; the service does not call it"} in changes  # fmt: skip
    assert {"kind": "compatible", "endpoint": "GET /flow/{flowId}/assessments",
            "detail": "new answer field `[].comment` (not read)"} in changes  # fmt: skip


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"openapi: [3.0\n  paths: {", "neither JSON nor YAML at line"),
        (b'{"swagger": "2.0", "paths": {}}', "not an OpenAPI 3 document"),
        (b"- just\n- a list\n", "the top level is not a mapping"),
        (b'{"openapi": "3.0.1", "paths": {}, "components": {"schemas": [1]}}', "`components` is not a mapping"),
        (b'{"openapi": "3.0.1", "info": {"version": "9"}, "paths": {"/flow/{flowId}": {"get": '
         b'{"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/nowhere"}}}}}}}}}',
         "a $ref cannot be resolved (/nowhere)"),
    ],
)  # fmt: skip
async def test_an_unreadable_document_exits_2_with_one_line(tmp_path: Path, content: bytes, said: str) -> None:
    """Not JSON nor YAML, not OpenAPI 3, not a mapping, a dangling $ref: exit 2, one line naming the file."""
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    code, out, err = await spec_diff(str(path))
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"wiseflow-sync spec diff: error: {path}: ")
    assert said in err


async def test_a_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    """A path with no file: exit 2, one line saying it cannot be read."""
    code, _, err = await spec_diff(str(tmp_path / "absent.yaml"))
    assert code == 2
    absent = tmp_path / "absent.yaml"
    assert err.strip().splitlines() == [
        f"wiseflow-sync spec diff: error: {absent}: cannot read it (No such file or directory)"
    ]
