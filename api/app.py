"""The Starlette application. ``uvicorn --factory api.app:create_app`` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from loguru import logger
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.opentelemetry import OpenTelemetryMiddleware

from api.fastpath import UserReadFastPath
from api.middleware import (
    HeaderLimitMiddleware,
    InFlight,
    InFlightLimitMiddleware,
    MetricsMiddleware,
    RequestContextMiddleware,
)
from api.problems import EXCEPTION_HANDLERS
from api.routes import ROUTES
from bootstrap import open_web
from observability import tracing
from observability.logs import configure_logging
from observability.metrics import WebMetrics
from settings import Settings, load_settings


def create_app(
    settings: Settings | None = None,
    *,
    configure_logs: bool = True,
    tracer_provider: trace.TracerProvider | None = None,
) -> Starlette:
    """The web app. Tests pass their own settings and (for traces) an in-memory provider."""
    settings = settings or load_settings()
    service = f"{settings.service_name}-web"
    if configure_logs:
        configure_logging(json=settings.log_json, level=settings.log_level, service=service)
    provider = tracer_provider or tracing.tracer_provider(service)
    metrics = WebMetrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_web(settings, metrics, provider) as web:
            logger.info("web.started", web_id=web.web_id, namespace=settings.redis_namespace)
            yield {"web": web}
        logger.info("web.stopped", web_id=web.web_id)
        tracing.shutdown(provider)

    in_flight = InFlight(settings.max_in_flight_requests)
    tracing_on = not isinstance(provider, trace.NoOpTracerProvider)
    return Starlette(
        routes=ROUTES,
        middleware=[
            # With tracing on, reads take the full stack too, for their server spans.
            *(
                []
                if tracing_on
                else [
                    Middleware(
                        UserReadFastPath,
                        metrics=metrics,
                        in_flight=in_flight,
                        header_limit=settings.max_header_bytes,
                    )
                ]
            ),
            # Ids first, so every answer carries them, a 431 for oversized headers included.
            Middleware(RequestContextMiddleware),
            Middleware(HeaderLimitMiddleware, limit=settings.max_header_bytes),
            # One source of server spans: Starlette's own middleware; with tracing off it
            # is left out altogether rather than run as a no-op on every request.
            *(
                [Middleware(OpenTelemetryMiddleware, tracer_provider=provider)]
                if tracing_on
                else []
            ),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(InFlightLimitMiddleware, in_flight=in_flight),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
