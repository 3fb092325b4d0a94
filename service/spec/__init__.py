"""WISEflow's OpenAPI description: the bundled snapshot, newer documents from a file, and their differences.

`document` reads a document (YAML or JSON) and resolves its `$ref`s; `shapes` derives the validation schemas
the snapshot's own examples show (`"error": null` on success); `diff` judges a newer document by what the
service uses of it (`service.adapters.wiseflow.endpoints`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

SNAPSHOT_VERSION: Final = "1.34.0"
SNAPSHOT_PATH: Final = Path(__file__).resolve().parent / f"openapi-{SNAPSHOT_VERSION}.json"
