"""Running as a service: the systemd notify protocol on a real datagram socket, health, config."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.harness import Project, wait_for


class NotifySocket:
    """What systemd listens on: a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[list[str]] = []

    def drain(self) -> list[list[str]]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                return self.messages

    def fields(self) -> list[str]:
        return [field.split("=")[0] for message in self.drain() for field in message]


@pytest.mark.slow
def test_sd_notify_ready_status_watchdog_reloading_stopping_in_order(
    project: Project, tmp_path: Path, stand_in: dict[str, str]
) -> None:
    listener = NotifySocket(tmp_path / "notify.sock")
    project.write_config("version: 1\njobs:\n  idle: {pipeline: fake.pipe:line, cron: '0 0 1 1 *'}\n")
    env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000", **stand_in}
    daemon = project.start_daemon("--no-check-pipelines", env=env)
    wait_for(lambda: "READY" in listener.fields(), 60, "READY=1")
    time.sleep(1.6)  # the watchdog interval is 1 s: pings every 0.5 s
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: listener.fields().count("READY") >= 2, 30, "READY=1 after the reload")
    assert daemon.stop() == 0
    messages = listener.drain()
    kinds = [message[0].split("=")[0] for message in messages]
    assert kinds[0] == "READY"  # nothing before: READY comes once recovery and reconcile are done
    ready = messages[0]
    assert ready[1].startswith("STATUS=1 jobs (revision ")
    assert kinds.count("WATCHDOG") >= 3
    reload_at = kinds.index("RELOADING")
    assert "READY" in kinds[reload_at:]
    assert messages[reload_at][1].startswith("MONOTONIC_USEC=")
    assert kinds[-1] == "STOPPING"


def test_without_notify_socket_nothing_is_sent() -> None:
    from scheduler.daemon.sd_notify import Notifier

    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")  # no socket, no error
    assert Notifier({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "20000000"}).watchdog_interval == 10.0


@pytest.mark.slow
def test_health_follows_the_daemon_heartbeat(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config("version: 1\njobs:\n  idle: {pipeline: fake.pipe:line, cron: '0 0 1 1 *'}\n")
    assert project.cli("health").returncode == 3  # daemon state: none is running
    daemon = project.start_daemon("--no-check-pipelines", env=stand_in)
    wait_for(lambda: project.cli("health").returncode == 0, 60, "a healthy daemon")
    report = json.loads(project.cli("health", "--json").stdout)
    assert report["healthy"] and report["pid"] == daemon.process.pid
    assert daemon.stop() == 0
    assert project.cli("health").returncode == 3  # a stopped daemon released its lease


@pytest.mark.parametrize("command", ["settings", "config"])
def test_settings_prints_effective_settings_masked(project: Project, command: str) -> None:
    project.write_config("version: 1\njobs: {}\n")
    (project.root / ".env").write_text("ZENML_SCHEDULER_KILL_GRACE=7s\nZENML_SCHEDULER_SHUTDOWN_GRACE=5s\n")
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "scheduler", command, "--json", "--config", str(project.config)],
        cwd=project.root, capture_output=True, text=True, check=True,
        env={**project.env, "ZENML_SCHEDULER_DB_URL": "postgresql+psycopg://u:hunter2@db/x",
             "ZENML_SCHEDULER_SHUTDOWN_GRACE": "9s"},
    )  # fmt: skip
    values = json.loads(result.stdout)
    assert "hunter2" not in result.stdout and values["db_url"] == "postgresql+psycopg://u:***@db/x"
    assert values["kill_grace"] == 7.0  # from .env
    assert values["shutdown_grace"] == 9.0  # the environment wins over .env


@pytest.mark.slow
def test_flags_win_over_the_environment(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(
        "version: 1\njobs:\n  long: {pipeline: fake.pipe:line, cron: '0 0 1 1 *', parameters: {mode: sleep}}\n"
    )
    env = {**stand_in, "ZENML_SCHEDULER_SHUTDOWN_GRACE": "120s", "ZENML_SCHEDULER_KILL_GRACE": "120s"}
    daemon = project.start_daemon("--no-check-pipelines", "--shutdown-grace", "1s", "--kill-grace", "1", env=env)
    wait_for(lambda: "JOB" in daemon.out_path.read_text(), 60, "daemon start")
    assert project.cli("trigger", "long").returncode == 0
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE status='running' AND pid IS NOT NULL"), 30, "a run")
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 20  # the flags' 1 s graces, not the environment's 120 s
    run = project.query("SELECT status, error FROM runs")[0]
    assert run["status"] == "cancelled" and "shutdown" in run["error"]
