"""The API's outer layer: a rate limit per client address, the body's size and time limits, and
the record of every request (an audit event each, in aggregate for anonymous ones) and a metric.

A pure ASGI middleware rather than a Starlette `BaseHTTPMiddleware`: it reads the body itself
(refusing it past the limit before any route parses it, chunked or not) and sees the final
status of every response, including the ones FastAPI produces for invalid requests. The client
limit comes first, before authentication: a client without a key must not be able to make the
daemon hash keys, parse bodies or write audit rows as fast as it can send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn

from fastapi import HTTPException, Request

from scheduler import tuning
from scheduler.api.rate_limit import RateLimiter, retry_after_header
from scheduler.quiet_log import QuietLog
from scheduler.store.audit import Event

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from scheduler.api.backend import ApiBackend
    from scheduler.feed.metrics import Metrics

log = logging.getLogger(__name__)


def refuse(
    request: Request,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[Any] | None = None,
) -> NoReturn:
    """End the request with `status`; the reason also goes to the audit event."""
    request.state.reason = detail
    if errors:
        request.state.errors = errors
    raise HTTPException(status, detail, headers=headers)


class BodyTooLarge(Exception):
    pass


class ApiGuard:
    def __init__(
        self,
        app: ASGIApp,
        backend: ApiBackend,
        metrics: Metrics,
        max_body: int,
        clients: RateLimiter | None = None,
        body_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.backend = backend
        self.metrics = metrics
        self.max_body = max_body
        self.clients = clients or RateLimiter(0, 1)
        self.body_timeout = body_timeout
        self._failures = QuietLog(log, every_s=tuning.API_REFUSAL_LOG_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})
        status = 500
        sent_start = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status, sent_start
            if message["type"] == "http.response.start":
                status, sent_start = message["status"], True
            await send(message)

        client = scope.get("client")
        wait = self.clients.take(client[0] if client else "(unknown)", time.monotonic())
        if wait:
            status = 429
            scope["state"]["reason"] = "rate limit of this client address exceeded"
            await _respond(send, 429, {"detail": scope["state"]["reason"]}, retry_after_header(wait))
            self._record(scope, status, time.perf_counter() - started)
            return
        try:
            body = await asyncio.wait_for(self._read_body(scope, receive), self.body_timeout)
        except BodyTooLarge:
            status = 413
            scope["state"]["reason"] = f"request body larger than {self.max_body} bytes"
            await _respond(send, 413, {"detail": scope["state"]["reason"]})
        except TimeoutError:
            status = 408
            scope["state"]["reason"] = f"the request body did not arrive within {self.body_timeout:g}s"
            await _respond(send, 408, {"detail": scope["state"]["reason"]})
        else:
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: only http.disconnect is left to wait for

            try:
                await self.app(scope, replay, send_and_watch)
            except Exception:
                self._failures.error("API request %s %s failed", scope["method"], scope["path"][:300], exc_info=True)
                status = 500
                if not sent_start:
                    await _respond(send, 500, {"detail": "internal error; see the daemon log"})
        finally:
            self._record(scope, status, time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "(unmatched)"
        self.metrics.api_request(template, status)
        state = scope["state"]
        key_name = state.get("key_name")
        client = scope.get("client")
        details: dict[str, Any] = {
            "method": scope["method"],
            "route": template,
            "path": scope["path"][:300],
            "status": status,
            "key": key_name,
            "client": client[0] if client else None,
            "elapsed_ms": round(elapsed * 1000, 2),
        }
        if "reason" in state:
            details["reason"] = state["reason"]
        if not key_name:
            self.backend.audit.anonymous.add(details["client"], status, template, state.get("reason"))
            return
        self.backend.audit.put(
            Event(
                "api-request",
                f"api:{key_name}",
                state.get("job"),
                state.get("run_key"),
                details=details,
            )
        )


async def _respond(send: Send, status: int, content: dict[str, Any], retry_after: str | None = None) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
