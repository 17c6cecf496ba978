"""Connections a client opens and never uses, against a real daemon subprocess with few
descriptors: they are closed or refused, runs keep launching, and the log stays small.

300 idle sockets once made a run fail with `Too many open files` and grew the log by 31 MB in
6 seconds; a client could hold a connection open for ever by never finishing its request head.
"""

from __future__ import annotations

import json
import resource
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.test_http import start_api
from tests.harness import Project, wait_for

pytestmark = pytest.mark.slow

CONFIG = """\
version: 1
jobs:
  tick:
    pipeline: tinypipes.api:report_pipeline
    every: 1s
    catchup: none
"""


def open_idle(host: str, port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def launch_failures(project: Project) -> list[str]:
    rows = project.query("SELECT error FROM runs WHERE error LIKE '%could not start%'")
    return [r["error"] for r in rows]


def test_idle_and_slow_connections_cannot_starve_runs(project: Project) -> None:
    base, daemon = start_api(
        project,
        CONFIG,
        ZENML_SCHEDULER_API_MAX_CONNECTIONS="20",
        ZENML_SCHEDULER_API_REQUEST_TIMEOUT="1s",
    )
    host, port = urlsplit(base).hostname, urlsplit(base).port
    assert host and port
    hard = 160  # well below what 300 sockets plus the daemon's own files would need
    resource.prlimit(daemon.process.pid, resource.RLIMIT_NOFILE, (hard, hard))
    before = project.query("SELECT COUNT(*) AS n FROM runs WHERE status='succeeded'")[0]["n"]

    idle = open_idle(host, port, 300)
    slow = socket.create_connection((host, port), timeout=5)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head that is never finished
    closed = sum(closed_by_server(sock, within=5) for sock in idle)
    assert closed == 300  # past the limit at once, the rest after the request timeout
    assert closed_by_server(slow, within=5)
    for sock in [*idle, slow]:
        sock.close()

    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # the API answers again
    wait_for(
        lambda: project.query("SELECT COUNT(*) AS n FROM runs WHERE status='succeeded'")[0]["n"] >= before + 3,
        30,
        "runs to keep succeeding",
    )
    assert launch_failures(project) == []
    log = daemon.log_path.read_text()
    assert log.count("closing new ones") <= 2, "the refusal is logged once per interval"
    assert len(log) < 200_000
    assert daemon.stop() == 0


def test_a_flood_of_anonymous_requests_is_limited_and_audited_in_one_row(project: Project) -> None:
    base, daemon = start_api(
        project, CONFIG, ZENML_SCHEDULER_API_CLIENT_RATE_LIMIT="1", ZENML_SCHEDULER_API_CLIENT_RATE_BURST="10"
    )
    with httpx.Client(base_url=base, timeout=10) as http:
        statuses = [http.get("/v1/jobs").status_code for _ in range(200)]
    assert statuses[:10] == [401] * 10 and statuses.count(429) >= 180
    started = time.monotonic()
    assert daemon.stop() == 0  # a clean stop writes the counts that are still open
    assert time.monotonic() - started < 30
    rows = project.query("SELECT event, details FROM audit WHERE source='api:anonymous'")
    assert [r["event"] for r in rows] == ["api-requests-anonymous"]
    details = json.loads(rows[0]["details"])
    assert details["client"] == "127.0.0.1" and details["count"] == 200
    assert details["statuses"]["401"] + details["statuses"]["429"] == 200
