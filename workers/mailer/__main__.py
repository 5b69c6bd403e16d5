"""``python -m workers.mailer``: one mailer process (scale with ``honcho start -c mailer=N``).

SIGTERM or SIGINT stops reading at once; messages in hand are finished within
``WORKER_SHUTDOWN_GRACE_SECONDS``, after which they are left pending, to be resumed by
this consumer name at its next start or reclaimed by another mailer.
"""

from __future__ import annotations

import sys

import anyio
from loguru import logger

from bootstrap import open_mailer
from observability import tracing
from observability.logs import configure_logging
from settings import load_settings
from storage.connections import DependencyUnavailable
from workers.mailer.mailer import Mailer
from workers.mailer.transport import parse_smtp_url
from workers.metrics_server import serve_metrics
from workers.signals import stop_on_signals


async def main() -> int:
    settings = load_settings()
    if settings.smtp_url is None and settings.environment == "production":
        print("invalid setting SMTP_URL: required when ENVIRONMENT=production", file=sys.stderr)
        return 2
    if settings.smtp_url is not None:
        try:
            parse_smtp_url(settings.smtp_url.get_secret_value())
        except ValueError as exc:
            print(f"invalid setting SMTP_URL: {exc}", file=sys.stderr)
            return 2
    service = f"{settings.service_name}-mailer"
    configure_logging(json=settings.log_json, level=settings.log_level, service=service)
    provider = tracing.tracer_provider(service)
    try:
        async with open_mailer(settings, provider) as deps, anyio.create_task_group() as tg:
            mailer = Mailer(deps)
            grace = settings.worker_shutdown_grace_seconds
            tg.start_soon(stop_on_signals, mailer.stop, tg.cancel_scope, grace, "mailer")
            await tg.start(serve_metrics, settings.host, settings.port, mailer.metrics_exposition)
            logger.info(
                "mailer.started",
                consumer=deps.group.consumer,
                streams=deps.group.streams,
                smtp=settings.smtp_url is not None,
            )
            await mailer.run()
            tg.cancel_scope.cancel()
    except DependencyUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        tracing.shutdown(provider)
    logger.info("mailer.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, backend_options={"use_uvloop": True}))
