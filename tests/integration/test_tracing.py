"""One signup's spans, web and worker, recorded in memory: one trace, producer → consumer."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from settings import Settings
from tests.integration.conftest import running_worker, web_client

pytestmark = pytest.mark.anyio


async def test_web_and_worker_spans_share_one_trace(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with (
        web_client(settings, tracer_provider=provider) as client,
        running_worker(settings, tracer_provider=provider),
    ):
        response = await client.post(
            "/signup",
            json={
                "name": "Tia",
                "email": f"{uuid.uuid4().hex}@example.com",
                "password": "pw123456",
            },
        )
        assert response.status_code == 201
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server = spans["POST /signup"]
    producer = spans[f"send {settings.redis_namespace}:commands"]
    consumer = spans[f"process {settings.redis_namespace}:commands"]
    postgres = spans["postgres transaction"]
    read_model = spans["read model update"]

    assert server.kind == SpanKind.SERVER
    assert producer.kind == SpanKind.PRODUCER
    assert consumer.kind == SpanKind.CONSUMER
    trace_ids = {s.context.trace_id for s in (server, producer, consumer, postgres, read_model)}
    assert len(trace_ids) == 1
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert postgres.parent is not None
    assert postgres.parent.span_id == consumer.context.span_id
    assert read_model.parent is not None
    assert read_model.parent.span_id == consumer.context.span_id
    consumer_attributes = dict(consumer.attributes or {})
    producer_attributes = dict(producer.attributes or {})
    group = f"{settings.redis_namespace}-workers"
    assert consumer_attributes["messaging.consumer.group.name"] == group
    assert (
        consumer_attributes["messaging.message.id"] == producer_attributes["messaging.message.id"]
    )
    # No secret in any attribute of any span.
    for span in exporter.get_finished_spans():
        for value in (span.attributes or {}).values():
            assert "pw123456" not in str(value)
            assert "$2b$" not in str(value)
