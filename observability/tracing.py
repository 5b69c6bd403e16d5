"""OpenTelemetry traces that follow a command across the stream.

Off (a no-op tracer, no cost) unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; then spans go
over OTLP/HTTP with ``service.name`` set per process type. The web makes a server span per
request and a PRODUCER span for the ``XADD`` whose context travels in the entry's
``traceparent`` field; the worker makes a CONSUMER span parented by it, with child spans
for the Postgres transaction and the read-model update.
"""

from __future__ import annotations

import os

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracerProvider, format_trace_id

TRACER_NAME = "signup-service"


def tracer_provider(service_name: str) -> trace.TracerProvider:
    """An exporting provider when an OTLP endpoint is configured, else a no-op one."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return NoOpTracerProvider()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def shutdown(provider: trace.TracerProvider) -> None:
    """Flush spans still buffered (the SDK's provider only)."""
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def inject() -> str:
    """The current span's context as a W3C ``traceparent`` value ('' when not tracing)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def extract(traceparent: str) -> Context | None:
    if not traceparent:
        return None
    return propagate.extract({"traceparent": traceparent})


def trace_id_of(traceparent: str) -> str:
    """The trace id in a ``traceparent`` header, for log lines ('' if none)."""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else ""
