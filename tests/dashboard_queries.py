"""The PromQL of the Grafana dashboard, and the metric names each expression reads.

Used by ``tests/unit/test_deploy_files.py`` (every name is in the metric catalogue) and
meant for an e2e test that checks the same names against live ``/metrics`` output.

The dashboard's expressions are plain PromQL (no Grafana variables such as
``$__rate_interval``), so they can also be sent to a real Prometheus as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_PATH = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "signup-service.json"

# Aggregation operators and keywords are case-insensitive in PromQL; compared lower-cased.
AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "atan2",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
# Every PromQL function. A function is also recognised by the "(" after it; the list
# covers a function name written without a call (never valid, but never a metric).
FUNCTIONS = frozenset(
    {
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "end",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "info",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "start",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
    }
)

_NAME_MATCHER = re.compile(r"""__name__\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
_STRINGS = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# Not preceded by a word character, "." or ":": leaves out the unit of a duration (5m),
# the exponent of a number (1e-9) and the tail of a hex literal (0x1f).
_IDENTIFIER = re.compile(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects.

    Leaves out functions, aggregation operators and keywords, label names (inside ``{}``
    and in ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right`` lists),
    string literals, numbers and durations. A ``{__name__="..."}`` matcher counts as a
    name.
    """
    names = {a or b for a, b in _NAME_MATCHER.findall(expr)}
    text = _STRINGS.sub(" ", expr)
    text = _LABEL_MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        lowered = word.lower()
        if lowered in KEYWORDS or lowered in AGGREGATIONS or word in FUNCTIONS:
            continue
        if text[match.end() :].lstrip().startswith("("):
            continue  # a call: some function this list does not know yet
        names.add(word)
    return names


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"{path}: a dashboard is a JSON object")
    return data


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included (a collapsed row holds its panels)."""
    stack: list[Any] = list(reversed(dashboard.get("panels", [])))
    while stack:
        panel = stack.pop()
        if not isinstance(panel, dict):
            raise TypeError(f"a panel is a JSON object, not {panel!r}")
        yield panel
        stack.extend(reversed(panel.get("panels", [])))


def dashboard_expressions(path: Path = DASHBOARD_PATH) -> list[str]:
    """The ``expr`` of every query of every panel, in dashboard order."""
    expressions: list[str] = []
    for panel in iter_panels(load_dashboard(path)):
        for target in panel.get("targets", []):
            expr = target.get("expr") if isinstance(target, dict) else None
            if isinstance(expr, str) and expr.strip():
                expressions.append(expr)
    return expressions
