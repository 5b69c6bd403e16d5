"""How a consumer process (worker, mailer) stops: SIGTERM or SIGINT stops its reading at
once; what it holds is finished within the grace time, after which ``scope`` is cancelled
and the rest is left pending (resumed by this consumer name at its next start, or
reclaimed by another). A second signal means: now."""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio
from anyio import CancelScope
from loguru import logger


async def stop_on_signals(
    stop: Callable[[], None], scope: CancelScope, grace: float, process: str
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            logger.info(f"{process}.stopping", signal=name, grace_seconds=grace)
            stop()
            break
        with anyio.move_on_after(grace):
            async for _ in signals:
                break
        logger.warning(f"{process}.grace_expired")
        scope.cancel()
