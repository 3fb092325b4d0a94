"""Every benchmark in turn, then one table of their headline figures (`make bench`).

    python bench/all.py [--quick] [--sync-scale 10]

Runs bench/ratelimit.py, bench/sync_scale.py, bench/ingest.py and bench/slow_senders.py as separate processes
(their own output is shown as they go); each writes its headline rows to a JSON file that this script
collects. `--quick` is a smoke run: a smaller world for sync_scale, one short round for ingest.
`--sync-scale 10` runs sync_scale on the 10x world too (about 15 more minutes) and adds its peak RSS
against the default world's to the table. A missed target shows as MISSED in the table; the exit status is
1 only when a benchmark produced no figures at all."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = (
    ("ratelimit.py", [], []),
    ("sync_scale.py", [], ["--flows", "200", "--participants", "50"]),
    ("ingest.py", [], ["--quick"]),
    ("slow_senders.py", [], ["--seconds", "3"]),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller, shorter runs (a smoke test)")
    parser.add_argument(
        "--sync-scale", type=int, default=1, metavar="N", help="sync_scale on N times the flows too (10: 10x)"
    )
    args = parser.parse_args()
    rows: list[list[str]] = []
    failed = []
    scaled = ["--scale", str(args.sync_scale)] if args.sync_scale > 1 else []  # the 1x world runs first
    with tempfile.TemporaryDirectory() as tmp:
        for script, normal, quick in BENCHES:
            out = Path(tmp) / f"{script}.json"
            command = [
                sys.executable,
                str(HERE / script),
                *(quick if args.quick else normal),
                *(scaled if script == "sync_scale.py" else []),
                "--json",
                str(out),
            ]
            print(f"\n=== bench/{script} {' '.join(command[2:-2])}".rstrip(), flush=True)
            code = subprocess.run(command, check=False).returncode  # noqa: S603 - our own scripts
            if out.exists():
                rows += json.loads(out.read_text())
            if not out.exists():  # a missed target still writes its rows (MISSED); this one gave none
                failed.append(script)
                rows.append([script.removesuffix(".py"), "(no figures)", f"exit {code}", "-", "FAILED"])
    print_table(rows)
    if args.sync_scale == 1:
        print("\nthe sync at 10x the world (peak RSS 10x / 1x): make bench SYNC_SCALE=10 (15 min more)")
    return 1 if failed else 0


def print_table(rows: list[list[str]]) -> None:
    """One table: benchmark, figure, value, target, verdict."""
    header = ["benchmark", "figure", "value", "target", "verdict"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    raise SystemExit(main())
