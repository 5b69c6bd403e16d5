"""The Starlette application. ``uvicorn --factory api.app:create_app`` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from loguru import logger
from starlette.applications import Starlette
from starlette.middleware import Middleware

from api.middleware import RequestContextMiddleware
from api.problems import EXCEPTION_HANDLERS
from api.routes import ROUTES
from bootstrap import open_web
from observability.logs import configure_logging
from settings import Settings, load_settings


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> Starlette:
    settings = settings or load_settings()
    if configure_logs:
        configure_logging(
            json=settings.log_json, level=settings.log_level, service=f"{settings.service_name}-web"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_web(settings) as web:
            logger.info("web.started", web_id=web.web_id, namespace=settings.redis_namespace)
            yield {"web": web}
        logger.info("web.stopped", web_id=web.web_id)

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
