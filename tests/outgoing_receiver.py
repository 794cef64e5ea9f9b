"""A real HTTP receiver on 127.0.0.1 for outgoing webhook tests: records every request."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, object]:
        return dict(orjson.loads(self.body))

    def verify(self, secret: str) -> dict[str, object]:
        """What a newsroom's receiver does: raises WebhookVerificationError if not signed."""
        return dict(Webhook(secret).verify(self.body, self.headers))


class Receiver:
    """Answers `status_for(n)` to the n-th request (0-based), after `delay_for(n)` seconds."""

    def __init__(
        self,
        status_for: Callable[[int, dict[str, object]], int] = lambda _n, _event: 204,
        delay_for: Callable[[int], float] = lambda _n: 0.0,
    ) -> None:
        self.status_for = status_for
        self.delay_for = delay_for
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    number = len(receiver.requests)
                    received = Received(dict(self.headers.items()), body, time.monotonic())
                    receiver.requests.append(received)
                time.sleep(receiver.delay_for(number))
                status = receiver.status_for(number, received.event)
                self.send_response(status)
                answer = b'{"ok": true}' if status < 300 else b"receiver says no"
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks"

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def events(self) -> list[dict[str, object]]:
        with self.lock:
            return [request.event for request in self.requests]


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
