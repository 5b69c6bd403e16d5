"""``python -m workers``: one worker process (scale with ``honcho start -c worker=N``).

SIGTERM or SIGINT stops reading at once; batches in hand are finished within
``WORKER_SHUTDOWN_GRACE_SECONDS``, after which they are abandoned unacked, to be resumed
by this consumer name at its next start or reclaimed by another worker.
"""

from __future__ import annotations

import sys

import anyio
from loguru import logger

from bootstrap import open_worker
from observability import tracing
from observability.logs import configure_logging
from settings import load_settings
from storage.connections import DependencyUnavailable
from workers.consumer import Consumer
from workers.metrics_server import serve_metrics
from workers.signals import stop_on_signals


async def main() -> int:
    settings = load_settings()
    service = f"{settings.service_name}-worker"
    configure_logging(json=settings.log_json, level=settings.log_level, service=service)
    provider = tracing.tracer_provider(service)
    try:
        async with open_worker(settings, provider) as worker, anyio.create_task_group() as tg:
            consumer = Consumer(worker)
            grace = settings.worker_shutdown_grace_seconds
            tg.start_soon(stop_on_signals, consumer.stop, tg.cancel_scope, grace, "worker")
            # Liveness and metrics on $PORT (honcho gives each worker its own).
            await tg.start(serve_metrics, settings.host, settings.port, consumer.metrics_exposition)
            logger.info("worker.started", consumer=consumer.name, stream=worker.keys.commands)
            await consumer.run()
            tg.cancel_scope.cancel()
    except DependencyUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        tracing.shutdown(provider)
    logger.info("worker.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, backend_options={"use_uvloop": True}))
