"""Metrics and logs of the real processes after real traffic."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.dashboard_queries import dashboard_expressions, promql_metric_names
from tests.e2e.conftest import Stack
from tests.prometheus_text import Sample, names, parse, total

WEB_METRICS = {
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_request_duration_seconds_count",
    "http_request_duration_seconds_sum",
    "http_requests_in_flight",
    "signups_total",
    "idempotency_requests_total",
    "reply_wait_seconds_bucket",
    "reply_wait_seconds_count",
    "reply_timeouts_total",
    "commands_enqueued_total",
}
WORKER_METRICS = {
    "commands_processed_total",
    "command_processing_seconds_bucket",
    "command_queue_wait_seconds_bucket",
    "commands_in_progress",
    "command_redeliveries_total",
    "commands_reclaimed_total",
    "last_command_processed_timestamp_seconds",
    "stream_length",
    "stream_group_lag",
    "stream_group_pending",
}
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
}


def web_metrics(http: httpx.Client) -> list[Sample]:
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def worker_metrics(stack: Stack) -> list[Sample]:
    samples: list[Sample] = []
    for name in ("worker.1", "worker.2"):
        response = httpx.get(f"http://127.0.0.1:{stack.ports[name]}/metrics", timeout=5)
        assert response.status_code == 200
        samples += parse(response.text)
    return samples


def test_metrics_count_the_traffic(stack: Stack, http: httpx.Client) -> None:
    web_before, workers_before = web_metrics(http), worker_metrics(stack)
    emails = [f"{uuid.uuid4().hex}@example.com" for _ in range(5)]
    key = {"Idempotency-Key": f"metrics-{uuid.uuid4()}"}
    body = {"name": "Mo", "password": "metrics-pw-1"}
    assert http.post("/signup", json={**body, "email": emails[0]}, headers=key).status_code == 201
    assert http.post("/signup", json={**body, "email": emails[0]}, headers=key).status_code == 201
    for email in emails[1:]:
        assert http.post("/signup", json={**body, "email": email}).status_code == 201
    assert http.post("/signup", json={**body, "email": emails[1]}).status_code == 409
    assert http.post("/signup", json={**body, "email": "bad"}).status_code == 422
    web_after, workers_after = web_metrics(http), worker_metrics(stack)

    assert names(web_after) >= WEB_METRICS | PROCESS_METRICS
    assert names(workers_after) >= WORKER_METRICS | PROCESS_METRICS

    def delta(name: str, before: list[Sample], after: list[Sample], **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    signup_route = {"route": "/signup", "method": "POST"}
    assert delta("http_requests_total", web_before, web_after, **signup_route) == 8
    assert delta("http_requests_total", web_before, web_after, status="201", **signup_route) == 6
    assert delta("http_request_duration_seconds_count", web_before, web_after, **signup_route) == 8
    assert delta("signups_total", web_before, web_after, outcome="created") == 5
    assert delta("signups_total", web_before, web_after, outcome="replayed") == 1
    assert delta("signups_total", web_before, web_after, outcome="email_taken") == 1
    assert delta("signups_total", web_before, web_after, outcome="invalid") == 1
    assert delta("idempotency_requests_total", web_before, web_after, outcome="new") == 1
    assert delta("idempotency_requests_total", web_before, web_after, outcome="replayed") == 1
    assert delta("commands_enqueued_total", web_before, web_after) == 6
    assert delta("reply_wait_seconds_count", web_before, web_after) == 6
    assert total(web_after, "http_requests_in_flight") == 1  # this scrape itself

    processed = workers_before, workers_after
    assert delta("commands_processed_total", *processed, outcome="succeeded") == 5
    assert delta("commands_processed_total", *processed, outcome="rejected") == 1
    assert delta("command_queue_wait_seconds_count", *processed) == 6
    assert delta("command_processing_seconds_count", *processed) == 6
    assert total(workers_after, "stream_length") >= 6
    assert total(workers_after, "stream_group_pending") == 0
    assert total(workers_after, "process_resident_memory_bytes") > 10_000_000
    assert total(workers_after, "last_command_processed_timestamp_seconds") > 1.7e9


def test_worker_liveness_endpoint(stack: Stack) -> None:
    response = httpx.get(f"http://127.0.0.1:{stack.ports['worker.1']}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_one_signup_logs_the_same_request_id_in_web_and_worker(
    stack: Stack, http: httpx.Client
) -> None:
    request_id = f"log-{uuid.uuid4().hex}"
    password = "log-secret-pw-77"
    response = http.post(
        "/signup",
        json={"name": "Lu", "email": f"{uuid.uuid4().hex}@example.com", "password": password},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 201
    lines_by_process: dict[str, list[dict[str, object]]] = {}
    for path in sorted(stack.log_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            record = json.loads(line)  # every line is one JSON object
            assert "ts" in record
            assert "level" in record
            if record.get("request_id") == request_id:
                lines_by_process.setdefault(path.stem, []).append(record)
    assert "web.1" in lines_by_process
    worker_lines = [r for p, rs in lines_by_process.items() if p.startswith("worker") for r in rs]
    assert worker_lines, lines_by_process.keys()
    applied = [r for r in worker_lines if r["event"] == "command.applied"]
    assert len(applied) == 1
    assert applied[0]["command_id"]
    assert applied[0]["correlation_id"] == request_id
    assert "trace_id" in applied[0]
    logs = stack.logs()
    assert password not in logs
    assert "$2b$" not in logs


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can yield: samples, plus each declared metric (a
    histogram as its _bucket/_sum/_count series), observed yet or not."""
    found = names(parse(text))
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            found |= (
                {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                if kind == "histogram"
                else {name}
            )
    return found


def test_every_dashboard_query_names_exported_metrics(stack: Stack, http: httpx.Client) -> None:
    exported = exported_names(http.get("/metrics").text)
    for name in ("worker.1", "worker.2", "mailer.1"):
        exported |= exported_names(
            httpx.get(f"http://127.0.0.1:{stack.ports[name]}/metrics", timeout=5).text
        )
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    for expr in expressions:
        metric_names = promql_metric_names(expr)
        assert metric_names, expr
        assert metric_names <= exported, (expr, metric_names - exported)
