"""The demo behind `make demo`: the service converges through a 429 storm, maintenance and lost webhooks."""

from __future__ import annotations

import io
import re

from service.demo import DemoReport, print_report, run_demo


async def test_the_shortest_demo_converges_through_every_fault() -> None:
    """Faults really injected (429, 503, duplicates), yet mirror and SIS equal the truth; console URL shown."""
    out = io.StringIO()
    report = await run_demo(10.0, out)
    assert report.by_status[429] >= 1
    assert report.by_status[503] >= 1
    assert report.missing_client_name == 0
    assert int(report.webhooks["duplicates"]) >= 1
    assert report.truth_grades > 0
    assert report.pending == {}
    assert (report.mismatched, report.undelivered, report.sis_duplicates) == (0, 0, 0)
    assert report.converged
    assert re.search(r"operator console: http://127\.0\.0\.1:\d+/ ", out.getvalue())
    print_report(report, out)
    assert "converged                       yes" in out.getvalue()


def test_a_demo_that_did_not_settle_has_not_converged() -> None:
    """Whatever is still pending when the wait ends (here the outbox) fails the demo, all else agreeing."""
    report = DemoReport(truth_grades=3, mirror_grades=3, pending={"outbox": 2})
    assert not report.converged
    report.pending = {}
    assert report.converged
