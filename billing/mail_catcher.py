"""A local SMTP server for development: keeps every message as an .eml file and prints a line."""

import argparse
import asyncio
import email
import email.policy
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class FolderHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(content, policy=email.policy.default)
        path = self.folder / f"{time.time_ns()}.eml"
        path.write_bytes(content)
        print(f"mail to {', '.join(envelope.rcpt_tos)}: {message['Subject']} ({path})", flush=True)
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--folder", type=Path, default=Path(".pledges/mail"))
    args = parser.parse_args()
    controller = Controller(FolderHandler(args.folder), hostname=args.host, port=args.port)
    controller.start()
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
