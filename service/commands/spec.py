"""`wiseflow-sync spec diff PATH [--format md|json]`: does a newer WISEflow OpenAPI document break the service?

UNIwise publishes the OpenAPI document of each WISEflow release. This compares one (YAML or JSON) with the
snapshot the service was built against, judged by what the service uses of it (`service.spec.diff`).
Exit 0 when nothing the service uses breaks, 1 when something does, 2 when the document cannot be read
(one line on stderr). Reads one file; no setting, no network, no database.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

EXIT_BREAKING: Final = 1
EXIT_UNREADABLE: Final = 2


def register(subparsers: Any) -> None:
    """Add the `spec` command and its `diff` action."""
    p = subparsers.add_parser("spec", help="judge a newer WISEflow OpenAPI document by what the service uses")
    sub = p.add_subparsers(dest="spec_command", metavar="ACTION")
    sub.required = True
    diff = sub.add_parser(
        "diff", help="compare a WISEflow OpenAPI document (YAML or JSON) with the bundled snapshot"
    )
    diff.add_argument("path", metavar="PATH", type=Path, help="the OpenAPI document, e.g. UNIwise's newest")
    diff.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    diff.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the differences; 0 when nothing used breaks, 1 when something does, 2 for an unreadable file."""
    # Imported here: jsonschema-path and PyYAML take a while to import, and only this command needs them.
    from referencing.exceptions import Unresolvable

    from service.spec.diff import compare
    from service.spec.document import DocumentError, read_document, snapshot, unusable
    from service.spec.report import render

    try:
        document = read_document(args.path)
        try:
            found = compare(snapshot(), document)
        # A dangling $ref, or a node of the wrong kind where the libraries expect a mapping or a list: the
        # document cannot be judged, which is exit 2 (1 would claim something breaks).
        except (Unresolvable, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise unusable(args.path, exc) from None
    except DocumentError as exc:
        print(f"wiseflow-sync spec diff: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    sys.stdout.write(render(found, args.format, str(args.path)))
    return EXIT_BREAKING if found.breaking else 0
