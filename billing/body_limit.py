"""Refuses request bodies over a size limit before anything reads them into memory."""

from collections.abc import Mapping

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = "The request body is too large."


class BodyLimitMiddleware:
    """`max_bytes` for every path, except the exact paths in `limits_by_path`."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, limits_by_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits_by_path = dict(limits_by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limits_by_path.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await _reject(send)
            return

        received = 0
        rejected = False

        async def limited_receive() -> Message:
            # A chunked body without Content-Length that grows past the limit: answer 413
            # ourselves and tell the app the client went away, so it stops reading.
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    rejected = True
                    await _reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            if not rejected:
                raise


async def _reject(send: Send) -> None:
    body = orjson.dumps({"message": TOO_LARGE, "detail": [{"loc": [], "msg": TOO_LARGE}]})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
