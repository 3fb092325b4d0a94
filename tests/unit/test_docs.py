"""The documentation stands alone: no file of the project points at notes outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from service.cli import COMMAND_MODULES

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


README_MAX_LINES = 150
# A relative Markdown link: [text](target) where target is not a URL; the anchor is kept apart.
LINK = re.compile(r"\]\((?!https?://|mailto:)([^)#\s]*)(?:#([^)\s]*))?\)")


def pages() -> list[Path]:
    """The READMEs and every page of docs/."""
    readmes = [ROOT / "README.md", ROOT / "k8s" / "README.md", ROOT / "otel" / "README.md"]
    return [*readmes, *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return {slug(line.lstrip("#")) for line in lines if line.startswith("#")}


def test_the_readme_is_a_front_door() -> None:
    """The README stays short: the details live in docs/ pages."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES


def test_the_readme_links_every_docs_page() -> None:
    """No docs/ page is an orphan: the README's "Where to read on" reaches each one."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    assert {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")} - linked == set()


def test_every_relative_link_of_the_docs_resolves() -> None:
    """Each relative link of the READMEs and docs/ names an existing file, and an existing heading if any."""
    broken = []
    for page in pages():
        for target, anchor in LINK.findall(page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve() if target else page
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert broken == []


def test_the_commands_table_lists_every_command() -> None:
    """Every command the CLI registers has its row in the README's commands table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `wiseflow-sync ")]
    named = {row.removeprefix("| `wiseflow-sync ").split()[0].strip("`") for row in rows}
    assert set(COMMAND_MODULES) - named == set()


def test_the_architecture_page_maps_every_module() -> None:
    """docs/architecture.md names every folder and module of service/ (commands by their name)."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    service = ROOT / "service"
    folders = [p for p in service.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    modules = [p for p in service.rglob("*.py") if p.name != "__init__.py"]
    names = [f"`{p.relative_to(service).as_posix()}/`" for p in folders]
    names += [f"`{p.stem}`" if p.parent.name == "commands" else f"`{p.name}`" for p in modules]
    assert [name for name in names if name not in page] == []
