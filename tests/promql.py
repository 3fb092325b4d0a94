"""The metric names a PromQL expression reads, and the names a live `/metrics` exports, for the tests that
hold the alerts and the dashboard to what the service really exports.

Not a PromQL parser: a tokenizer that drops what cannot be a metric name (string literals, label matchers
in braces, range and subquery selectors, the label lists of by/without/on/ignoring/group_left/group_right,
Grafana's `$variables`, numbers and durations, keywords, and every identifier called as a function), so
that what is left are the selectors' names. `promtool check rules` is the parser that proves the syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from service.adapters.metrics import Backlogs, ServiceMetrics, Snapshot
from service.core.webhook_figures import WebhookFigures

_STRINGS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS: Final = re.compile(r"\{[^{}]*\}")
_RANGES: Final = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS: Final = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES: Final = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\()?)")
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
     "inf", "nan", "Inf", "NaN", "e"}
)  # fmt: skip
# Numbers and durations (5m, 1d, 1e3) start with a digit: `metric_names` skips an identifier inside them.
HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (function names, labels, keywords and variables left out)."""
    text = _STRINGS.sub(" ", expr)
    text = _VARIABLES.sub(" ", text)
    previous = None
    while previous != text:  # innermost first: a label list may follow a function call's parentheses
        previous = text
        text = _MATCHERS.sub(" ", text)
        text = _RANGES.sub(" ", text)
        text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        start = match.start()
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_."):
            continue  # the tail of a number (1e3, 0.5) or of a longer token
        if match.group(1) is None and match.group(0) not in _KEYWORDS:
            names.add(match.group(0))
    return names


@dataclass(frozen=True, slots=True)
class Exported:
    """What a scrape shows: every series and family name (counters also with `_total`), and the histograms."""

    names: frozenset[str]
    histograms: frozenset[str]

    def knows(self, name: str) -> bool:
        """Whether a selector of `name` can match: an exported name, or a histogram's `_bucket/_sum/_count`."""
        if name in self.names:
            return True
        return any(name.endswith(s) and name.removesuffix(s) in self.histograms for s in HISTOGRAM_SUFFIXES)


async def exported() -> Exported:
    """The names a scrape of a fresh service shows (a histogram with no observation still names its family)."""
    metrics = ServiceMetrics()

    async def backlogs() -> Backlogs:
        return Backlogs(last_success=0.0, inbox={"pending": 0}, outbox={"pending": 0})

    metrics.read_at_scrape(Snapshot, backlogs, WebhookFigures())
    names: set[str] = set()
    histograms: set[str] = set()
    for family in text_string_to_metric_families((await metrics.render()).decode()):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            histograms.add(family.name)
    return Exported(frozenset(names), frozenset(histograms))


def unknown_names(expr: str, known: Exported) -> set[str]:
    """The names `expr` selects that no scrape exports."""
    return {name for name in metric_names(expr) if not known.knows(name)}
