"""The handler of the tests' SMTP server process: ``python -m aiosmtpd -n -l HOST:PORT -c
tests.smtp_spool.Spool DIR``. Each accepted message becomes one JSON file in ``DIR``
(renamed into place, so a reader never sees half of one); a recipient starting with
``refuse-`` is refused with a 550 and noted in ``DIR/refused``."""

from __future__ import annotations

import json
import os
import time
import uuid
from argparse import ArgumentParser
from pathlib import Path
from typing import Any


class Spool:
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    @classmethod
    def from_cli(cls, parser: ArgumentParser, *args: str) -> Spool:
        if len(args) != 1:
            parser.error("give the spool directory")
        return cls(args[0])

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("refuse-"):
            with (self.directory / "refused").open("a") as refused:
                refused.write(address + "\n")
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        part = self.directory / f".{name}.part"
        content = envelope.content
        text = content.decode("utf-8", "surrogateescape") if isinstance(content, bytes) else content
        part.write_text(json.dumps({"to": list(envelope.rcpt_tos), "message": text}))
        os.rename(part, self.directory / f"{name}.json")
        return "250 Message accepted for delivery"
