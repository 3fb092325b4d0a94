"""The documentation stands alone: no file of the project points at notes outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Written as a pattern so that this file does not match itself.
OUTSIDE = re.compile(r"\b(?:FACTS|DESIGN|STYLE)\.md\b|\.\./shared")
SCANNED = ("service", "tests", "bench", "k8s", "otel", "docs", ".ci")
TOP_FILES = ("README.md", "Makefile", "Dockerfile", "pyproject.toml")


def project_files() -> list[Path]:
    """Every text file of the project that a user receives."""
    files = [ROOT / name for name in TOP_FILES if (ROOT / name).exists()]
    for folder in SCANNED:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".sqlite3")
        ]
    return files


def test_no_file_refers_to_notes_outside_the_repository() -> None:
    """README, code, manifests and tests point at docs/, never at files users do not have."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in project_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_the_readme_links_to_docs_that_exist() -> None:
    """Every docs/ link of the README names a file of the repository."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    assert links
    assert [link for link in links if not (ROOT / link).is_file()] == []
