"""``python -m workers``: one worker process (scale with ``honcho start -c worker=N``).

SIGTERM or SIGINT stops reading at once; batches in hand are finished within
``WORKER_SHUTDOWN_GRACE_SECONDS``, after which they are abandoned unacked, to be resumed
by this consumer name at its next start or reclaimed by another worker.
"""

from __future__ import annotations

import sys

import anyio

from bootstrap import open_worker
from settings import load_settings
from workers.consumer import Consumer
from workers.process import run_process


async def main() -> int:
    settings = load_settings()
    return await run_process(
        settings,
        "worker",
        open_worker,
        Consumer,
        lambda w: {"consumer": w.settings.worker_name, "stream": w.keys.commands},
    )


if __name__ == "__main__":
    sys.exit(anyio.run(main, backend_options={"use_uvloop": True}))
