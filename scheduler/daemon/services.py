"""The daemon's side services: the audit feed, and what reads it (metrics, webhooks), and the API.

None of them is on the scheduling path: they run on their own threads, and a slow webhook
receiver or a burst of API requests never delays a fire. The HTTP stack is imported only when
the API is enabled, so a daemon without it stays as small as before.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from scheduler.config.model import Config
from scheduler.config.settings import Settings
from scheduler.errors import SettingsError
from scheduler.feed.audit_feed import AuditFeed, Subscriber
from scheduler.feed.lease_reading import LeaseState
from scheduler.feed.webhooks import WebhookSender
from scheduler.store.engine import Store
from scheduler.store.fires import FireResult

if TYPE_CHECKING:
    from scheduler.api.backend import ApiBackend
    from scheduler.api.server import ApiServer

log = logging.getLogger(__name__)


class Services:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        config: Callable[[], Config],
        hand_over: Callable[[FireResult], None],
        health: Callable[[], Mapping[str, bool]],
        *,
        lease: LeaseState | None = None,
    ) -> None:
        """`lease` reads this daemon's hold on the lease for the metrics (none without it)."""
        self.settings = settings
        self.store = store
        self.lease = lease
        self.webhooks = WebhookSender(store, config)
        subscribers: list[Subscriber] = [self.webhooks.subscriber]
        self.backend: ApiBackend | None = None
        self.server: ApiServer | None = None
        if settings.api_enabled:
            self._build_api(config, hand_over, health, subscribers)
        self.feed = AuditFeed(store, subscribers)

    def _build_api(
        self,
        config: Callable[[], Config],
        hand_over: Callable[[FireResult], None],
        health: Callable[[], Mapping[str, bool]],
        subscribers: list[Subscriber],
    ) -> None:
        s = self.settings
        # The host's own validity first (settings checked its spelling): a name that does not
        # resolve would otherwise count as "not loopback" and be refused for want of API keys.
        try:
            socket.getaddrinfo(s.api_host, None)
        except OSError as exc:
            raise SettingsError(
                f"cannot serve the API on {s.api_host}: the host name does not resolve ({exc.strerror})"
            ) from None
        from scheduler.api.app import build_app
        from scheduler.api.backend import ApiBackend
        from scheduler.api.keys import KeyRing
        from scheduler.api.rate_limit import RateLimiter
        from scheduler.api.server import ApiServer, is_loopback
        from scheduler.feed.metrics import Metrics

        keys = KeyRing(s.api_keys, s.resolved_api_keys_file)
        if not keys.keys and not is_loopback(s.api_host):
            raise SettingsError(
                f"refusing to serve the API on {s.api_host} without API keys: create one with "
                "`zenml-scheduler api-key create --scope trigger --name ci`, or bind 127.0.0.1"
            )
        if not keys.keys:
            log.warning("the HTTP API has no API keys: only /healthz and /readyz will answer")
        if (s.api_ssl_certfile is None) != (s.api_ssl_keyfile is None):
            raise SettingsError("api_ssl_certfile and api_ssl_keyfile must be set together")
        self.backend = backend = ApiBackend(self.store, config, timedelta(seconds=s.misfire_grace), hand_over, health)
        metrics = Metrics(backend.run_counts, lease=self.lease)
        subscribers.append(metrics.observe)
        app = build_app(
            backend,
            keys,
            RateLimiter(s.api_rate_limit, s.api_rate_burst),
            metrics,
            s.api_max_body,
            clients=RateLimiter(s.api_client_rate_limit, s.api_client_rate_burst),
            request_timeout=s.api_request_timeout,
        )
        cert, key = s.api_ssl_certfile, s.api_ssl_keyfile
        self.server = ApiServer(
            app,
            s.api_host,
            s.api_port,
            str(cert) if cert else None,
            str(key) if key else None,
            request_timeout=s.api_request_timeout,
            max_connections=s.api_max_connections,
        )

    def bind(self) -> None:
        """Take the API's port (a taken port fails here, before the daemon records anything)."""
        if self.server is not None:
            self.server.bind()

    def start(self) -> None:
        self.feed.start()
        self.webhooks.start()
        if self.backend is not None and self.server is not None:
            self.backend.audit.start()
            self.backend.recorder.start()
            self.server.start()

    @property
    def api_url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def stop_api(self) -> None:
        """First step of shutdown: stop taking requests (runs in flight keep their records)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.backend is not None:
            self.backend.recorder.stop()
            self.backend.audit.stop()

    def stop(self) -> None:
        self.stop_api()
        self.feed.stop()  # hands the last events (e.g. the final run outcomes) to the webhooks
        self.webhooks.stop()

    def describe(self) -> dict[str, Any]:
        return {"api": self.api_url}
