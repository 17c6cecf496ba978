"""Serve the API with uvicorn on a thread of the daemon: one process, one state database.

The socket is bound here, on the caller's thread, so a taken port or a bad address is a clear
start-up error rather than a log line from a thread. uvicorn only installs signal handlers on
the main thread, so the daemon's own SIGTERM/SIGHUP handling stays in charge.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

from scheduler import tuning
from scheduler.errors import SettingsError
from scheduler.quiet_log import quiet

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted connections of
    # such sockets, and without it Nagle and delayed ACKs add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SettingsError(f"cannot serve the API on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(False)  # children (pipeline runs) must not hold the port open
    return sock


class ApiServer:
    """uvicorn on a thread, over a socket bound by `bind` (or `start`) on the caller's thread."""

    def __init__(
        self,
        app: object,
        host: str,
        port: int,
        certfile: str | None = None,
        keyfile: str | None = None,
        *,
        request_timeout: float = 10.0,
        max_connections: int = 100,
    ) -> None:
        import uvicorn

        from scheduler.api.connections import guarded_protocol

        # With every descriptor taken, asyncio logs each failed accept (with a traceback): once a
        # minute is enough to say so.
        quiet(logging.getLogger("asyncio"), ("socket.accept() out of system resource",), tuning.API_REFUSAL_LOG_S)

        self.sock: socket.socket | None = None
        self.host = host
        self.port = port
        self.scheme = "https" if certfile else "http"
        config = uvicorn.Config(
            app,
            log_config=None,  # our logging setup stays in charge
            access_log=False,  # every request is audited instead
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            lifespan="off",
            timeout_graceful_shutdown=5,
            http=guarded_protocol(request_timeout, max_connections),
            timeout_keep_alive=tuning.API_KEEP_ALIVE_S,
            # asyncio accepts up to `backlog` connections per wake-up before any of them is looked
            # at: a small batch keeps a flood from holding hundreds of descriptors at once.
            backlog=min(tuning.API_ACCEPT_BATCH, max_connections),
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def bind(self) -> None:
        if self.sock is None:
            self.sock = bind(self.host, self.port)
            self.port = self.sock.getsockname()[1]

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException:  # uvicorn raises SystemExit on start-up errors
            log.exception("the API server stopped unexpectedly")

    def start(self, timeout: float = 10.0) -> None:
        self.bind()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SettingsError(f"the API server did not start on {self.url}; see the log")
            time.sleep(0.01)
        log.info("HTTP API listening on %s", self.url)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.sock is not None:
            self.sock.close()
