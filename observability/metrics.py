"""Prometheus metrics (aioprometheus), one registry per process, made at start-up.

Names follow Prometheus conventions: base units (``_seconds``, ``_bytes``), counters end in
``_total``, histograms rather than summaries (summaries cannot be aggregated across
processes), and only low-cardinality labels (a route template, never an id).
"""

from __future__ import annotations

import os
from typing import cast

import psutil
from aioprometheus.collectors import Counter, Gauge, Histogram, Registry
from aioprometheus.histogram import Histogram as Buckets
from aioprometheus.renderer import render

# Latency of requests and replies: from a Redis round trip to a cost-12 bcrypt under load.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Time a command waits in the stream: up to a long outage.
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


# The events stream's types (storage.events.EVENT_TYPES), zeroed at start.
EVENT_TYPES = ("user.signed_up.v1", "user.email_verified.v1", "user.verification_requested.v1")

SIGNUP_OUTCOMES = (
    "created",
    "replayed",
    "email_taken",
    "in_flight",
    "invalid",
    "rate_limited",
    "accepted",
    "failed",
    "unavailable",
)


def _zero(counter: Counter, label: str, values: tuple[str, ...]) -> None:
    # Every known series exists from the start, so rate() and dashboards see 0, not nothing.
    for value in values:
        counter.set({label: value}, 0)


class ProcessMetrics:
    """CPU, memory, file descriptors and start time of this process, read at scrape time."""

    def __init__(self, registry: Registry) -> None:
        self._process = psutil.Process(os.getpid())
        self.cpu = Counter(
            "process_cpu_seconds_total", "User and system CPU time", registry=registry
        )
        self.rss = Gauge("process_resident_memory_bytes", "Resident memory", registry=registry)
        self.vms = Gauge("process_virtual_memory_bytes", "Virtual memory", registry=registry)
        self.fds = Gauge("process_open_fds", "Open file descriptors", registry=registry)
        self.threads = Gauge("process_threads", "OS threads", registry=registry)
        self.start = Gauge(
            "process_start_time_seconds", "Start time, Unix epoch", registry=registry
        )
        self.start.set({}, self._process.create_time())

    def sample(self) -> None:
        p = self._process
        with p.oneshot():
            times = p.cpu_times()
            memory = p.memory_info()
            self.cpu.set({}, times.user + times.system)
            self.rss.set({}, memory.rss)
            self.vms.set({}, memory.vms)
            self.fds.set({}, p.num_fds())
            self.threads.set({}, p.num_threads())


class RequestSeries:
    """``http_requests_total`` and ``http_request_duration_seconds``, updated once per request.

    aioprometheus checks the labels and serialises them to a key (orjson) on every update,
    about a tenth of what a cached read costs. Here each label set is checked and keyed
    once, through the public API, and later updates go straight to the series in the
    collectors' own store, so the exposition is exactly what the public API would give
    (``tests/unit/test_metrics.py`` holds the two side by side).
    """

    def __init__(self, requests: Counter, duration: Histogram) -> None:
        self._requests = requests
        self._duration = duration
        self._count_keys: dict[tuple[str, str, int], object] = {}
        self._buckets: dict[tuple[str, str], Buckets] = {}

    def observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        key = self._count_keys.get((route, method, status))
        if key is None:
            labels = {"route": route, "method": method, "status": str(status)}
            self._requests.inc(labels)
            store_key = self._requests.values.__keytransform__(labels)  # type: ignore[no-untyped-call]
            self._count_keys[(route, method, status)] = store_key
        else:
            self._requests.values.store[key] += 1
        buckets = self._buckets.get((route, method))
        if buckets is None:
            labels = {"route": route, "method": method}
            self._duration.observe(labels, elapsed)
            self._buckets[(route, method)] = cast(Buckets, self._duration.get_value(labels))
        else:
            buckets.observe(elapsed)


class StreamGauges:
    """Length of each stream, and lag and pending count of each consumer group on one, as
    a consumer process sees them at scrape time (``workers.group.observe_streams``)."""

    def __init__(self, registry: Registry) -> None:
        self.length = Gauge("stream_length", "XLEN of a stream", registry=registry)
        self.lag = Gauge(
            "stream_group_lag", "Entries not yet delivered to the group", registry=registry
        )
        self.pending = Gauge(
            "stream_group_pending", "Entries delivered but not acked", registry=registry
        )


class WebMetrics:
    def __init__(self) -> None:
        self.registry = r = Registry()
        self.process = ProcessMetrics(r)
        self.requests = Counter("http_requests_total", "HTTP requests answered", registry=r)
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.answered = RequestSeries(self.requests, self.duration)
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being served", registry=r)
        self.in_flight.set({}, 0)
        self.signups = Counter("signups_total", "POST /signup answers by outcome", registry=r)
        self.idempotency = Counter(
            "idempotency_requests_total", "Requests with an Idempotency-Key by outcome", registry=r
        )
        self.reply_wait = Histogram(
            "reply_wait_seconds",
            "Time from enqueue to the worker's reply",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.reply_timeouts = Counter(
            "reply_timeouts_total", "Requests answered 202 for want of a reply", registry=r
        )
        self.enqueued = Counter(
            "commands_enqueued_total", "Commands added to the stream", registry=r
        )
        self.verifications = Counter(
            "email_verifications_total",
            "POST /verify-email answers: verified (also again), invalid_token, accepted (202)",
            registry=r,
        )
        self.resends = Counter(
            "verification_resends_total",
            "POST /verify-email/resend by outcome: enqueued or limited (both answered 202)",
            registry=r,
        )
        self.reply_timeouts.set({}, 0)
        self.enqueued.set({}, 0)
        _zero(
            self.verifications,
            "outcome",
            ("verified", "invalid_token", "accepted"),
        )
        _zero(self.resends, "outcome", ("enqueued", "limited"))
        _zero(self.signups, "outcome", SIGNUP_OUTCOMES)
        _zero(self.idempotency, "outcome", ("new", "replayed", "mismatch", "in_flight"))


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = r = Registry()
        self.process = ProcessMetrics(r)
        self.processed = Counter(
            "commands_processed_total", "Commands settled by outcome", registry=r
        )
        self.processing = Histogram(
            "command_processing_seconds",
            "Time to apply and settle a command's batch",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.queue_wait = Histogram(
            "command_queue_wait_seconds",
            "Time from XADD to the start of processing",
            registry=r,
            buckets=QUEUE_BUCKETS,
        )
        self.in_progress = Gauge("commands_in_progress", "Commands being processed", registry=r)
        self.redeliveries = Counter(
            "command_redeliveries_total",
            "Entries processed again after an earlier delivery",
            registry=r,
        )
        self.reclaimed = Counter(
            "commands_reclaimed_total",
            "Entries taken over from another consumer (XAUTOCLAIM)",
            registry=r,
        )
        self.dead_letters = Counter(
            "dead_letters_total", "Entries moved to dead letters", registry=r
        )
        self.last_processed = Gauge(
            "last_command_processed_timestamp_seconds",
            "When a command was last settled",
            registry=r,
        )
        self.streams = StreamGauges(r)
        self.dependency_errors = Counter(
            "dependency_errors_total", "Failed calls to Postgres or Redis", registry=r
        )
        self.events_appended = Counter(
            "events_appended_total", "Events appended to the events stream by type", registry=r
        )
        _zero(self.events_appended, "type", EVENT_TYPES)
        for metric in (self.in_progress, self.redeliveries, self.reclaimed, self.last_processed):
            metric.set({}, 0)
        _zero(self.processed, "outcome", ("succeeded", "rejected", "dead_lettered"))
        _zero(self.dead_letters, "reason", ("malformed", "max_deliveries"))
        _zero(self.dependency_errors, "dependency", ("postgres", "redis"))


class MailerMetrics:
    def __init__(self) -> None:
        self.registry = r = Registry()
        self.process = ProcessMetrics(r)
        self.sent = Counter(
            "emails_sent_total",
            "Messages by outcome: sent (the SMTP server took it), logged (no SMTP_URL), "
            "retried (a 4xx or no connection), dead_lettered (a 5xx)",
            registry=r,
        )
        self.send_seconds = Histogram(
            "email_send_seconds",
            "Time to hand one message to the SMTP server",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.events_seen = Counter(
            "mailer_events_total", "Events read by the mailer, by type", registry=r
        )
        self.dead_letters = Counter(
            "dead_letters_total", "Entries moved to dead letters", registry=r
        )
        self.streams = StreamGauges(r)
        self.dependency_errors = Counter(
            "dependency_errors_total", "Failed calls to Redis or the SMTP server", registry=r
        )
        _zero(self.sent, "outcome", ("sent", "logged", "retried", "dead_lettered"))
        _zero(self.events_seen, "type", EVENT_TYPES)
        _zero(self.dead_letters, "reason", ("rejected", "malformed", "max_deliveries"))
        _zero(self.dependency_errors, "dependency", ("redis", "smtp"))


def exposition(registry: Registry, process: ProcessMetrics) -> tuple[bytes, dict[str, str]]:
    """The text exposition of a registry, with process metrics freshly sampled."""
    process.sample()
    content, headers = render(registry, [])
    return content, dict(headers)
