"""The per-request series, updated around aioprometheus's label handling, expose exactly
what aioprometheus's own API gives for the same requests."""

from __future__ import annotations

from aioprometheus.renderer import render

from observability.metrics import WebMetrics

REQUESTS = [
    ("/users/{user_id}", "GET", 200, 0.0007),
    ("/users/{user_id}", "GET", 200, 0.003),
    ("/users/{user_id}", "GET", 404, 0.02),
    ("/signup", "POST", 201, 0.04),
    ("/users/{user_id}", "GET", 200, 7.0),
    ("unmatched", "OTHER", 405, 0.0001),
]


def _exposition(metrics: WebMetrics) -> bytes:
    body, _ = render(metrics.registry, [])
    return body


def test_series_updates_expose_what_the_public_api_does() -> None:
    fast, public = WebMetrics(), WebMetrics()

    for route, method, status, elapsed in REQUESTS:
        fast.answered.observe(route, method, status, elapsed)
        public.requests.inc({"route": route, "method": method, "status": str(status)})
        public.duration.observe({"route": route, "method": method}, elapsed)

    # Process metrics differ between two registries' samples; compare the request series.
    def requests_lines(metrics: WebMetrics) -> list[bytes]:
        return [
            line
            for line in _exposition(metrics).splitlines()
            if line.startswith((b"http_requests_total", b"http_request_duration_seconds"))
        ]

    lines = requests_lines(fast)
    assert len(lines) > 3 * 14  # a bucket line per bound, per (route, method)
    assert lines == requests_lines(public)
    assert fast.requests.get({"route": "/users/{user_id}", "method": "GET", "status": "200"}) == 3
