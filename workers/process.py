"""The life of a consumer process (``python -m workers``, ``python -m workers.mailer``):
logging and tracing set up, its dependencies opened (``bootstrap``), ``/metrics`` and
``/health`` served on ``$PORT``, its loop run until a signal.

SIGTERM or SIGINT stops the loop's reading at once; what it holds is finished within
``WORKER_SHUTDOWN_GRACE_SECONDS``, after which the rest is left pending (resumed by this
consumer name at its next start, or reclaimed by another). A second signal means: now.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import anyio
from anyio import CancelScope
from loguru import logger
from opentelemetry import trace

from observability import tracing
from observability.logs import configure_logging
from settings import Settings
from storage.connections import DependencyUnavailable
from workers.metrics_server import serve_metrics

D = TypeVar("D")


class Loop(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...

    async def metrics_exposition(self) -> tuple[bytes, dict[str, str]]: ...


async def stop_on_signals(
    stop: Callable[[], None], scope: CancelScope, grace: float, kind: str
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            logger.info(f"{kind}.stopping", signal=name, grace_seconds=grace)
            stop()
            break
        with anyio.move_on_after(grace):
            async for _ in signals:
                break
        logger.warning(f"{kind}.grace_expired")
        scope.cancel()


async def run_process(
    settings: Settings,
    kind: str,
    open_deps: Callable[[Settings, trace.TracerProvider], AbstractAsyncContextManager[D]],
    make_loop: Callable[[D], Loop],
    describe: Callable[[D], dict[str, Any]],
) -> int:
    """Run one consumer process to its end; its exit code (1: a dependency unreachable)."""
    service = f"{settings.service_name}-{kind}"
    configure_logging(json=settings.log_json, level=settings.log_level, service=service)
    provider = tracing.tracer_provider(service)
    try:
        async with open_deps(settings, provider) as deps, anyio.create_task_group() as tg:
            loop = make_loop(deps)
            grace = settings.worker_shutdown_grace_seconds
            tg.start_soon(stop_on_signals, loop.stop, tg.cancel_scope, grace, kind)
            # Liveness and metrics on $PORT (honcho gives each process its own).
            await tg.start(serve_metrics, settings.host, settings.port, loop.metrics_exposition)
            logger.info(f"{kind}.started", **describe(deps))
            await loop.run()
            tg.cancel_scope.cancel()
    except DependencyUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        tracing.shutdown(provider)
    logger.info(f"{kind}.stopped")
    return 0
