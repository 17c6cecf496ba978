"""Bound what idle or slow connections can hold: uvicorn's own protocol, with two limits added.

uvicorn closes a connection that idles *between* requests (`timeout_keep_alive`), but one that
never finishes its first request head, or sends the next one a byte at a time, it keeps for
ever; a few hundred of those used to take every file descriptor the daemon had, and runs then
failed to launch. Here a connection must deliver each request head within `request_timeout`
(the body is bounded by the guard), and past `max_connections` open at once a new one is
closed as soon as it is accepted, before it can cost anything but the accept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scheduler import tuning
from scheduler.quiet_log import QuietLog

log = logging.getLogger(__name__)


def guarded_protocol(request_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools when installed, else h11) with the two limits."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    refusals = QuietLog(log, every_s=tuning.API_REFUSAL_LOG_S)
    base: Any = AutoHTTPProtocol

    class GuardedProtocol(base):  # type: ignore[misc,valid-type]
        _deadline: asyncio.TimerHandle | None = None
        _armed_for: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                refusals.warning(
                    "the HTTP API has %d connections open, its limit (setting api_max_connections); "
                    "closing new ones", max_connections,
                )  # fmt: skip
                transport.abort()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and self._idle():
                self._arm()  # the next request head on a kept-alive connection has its deadline too
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._armed_for = self.cycle  # a new request head replaces the cycle
            self._deadline = self.loop.call_later(request_timeout, self._head_overdue)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _head_overdue(self) -> None:
            self._deadline = None
            if self.cycle is self._armed_for and self._idle() and not self.transport.is_closing():
                self.transport.close()  # no request head arrived in time

    return GuardedProtocol
