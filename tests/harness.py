"""Real-process test harness: a temporary project, the CLI and the daemon as subprocesses."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.zenml_env import FIXTURES, REPO_ROOT, child_env

REPO = REPO_ROOT
TINYPIPES = FIXTURES / "tinypipes"


def base_env(zenml_config: Path) -> dict[str, str]:
    """The daemon's environment: the children's, minus the project folder (the daemon adds it)."""
    env = child_env(REPO, zenml_config)
    env["PYTHONPATH"] = str(REPO)
    return env


# A stand-in for the Python interpreter that children are started with: it answers
# `-m scheduler.child SPEC` according to the job's `mode` parameter (no ZenML, well under a
# second), so policy tests can produce successes, failures, hangs and grandchildren on purpose.
# The follower (`-m scheduler.child.follower`) is the real one.
# Every launch leaves a marker file `<run_key>#<attempt>` in `markers` when the job names one,
# holding the time it started and the pid of the daemon that launched it.
STAND_IN = """#!{python}
import json, os, signal, subprocess, sys, time
if sys.argv[2] == "scheduler.child.follower":  # the follower reads the real ZenML store...
    if os.environ.get("STAND_IN_FOLLOWER") == "crash":  # ...unless asked to die at once
        print("follower crashed on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
if sys.argv[2] != "scheduler.child":  # the pipeline check or the ZenML repair: nothing to do here
    if len(sys.argv) > 4:
        open(sys.argv[4], "w").write(json.dumps({{"found": False, "action": "none"}}))
    sys.exit(0)
spec = json.load(open(sys.argv[3]))
params = spec["parameters"]
mode = params.get("mode", "ok")
if params.get("markers"):
    os.makedirs(params["markers"], exist_ok=True)
    name = spec["run_key"].replace("/", "_") + "#" + spec["run_name"].rsplit("-", 1)[-1]
    open(os.path.join(params["markers"], name), "w").write(f"{{time.time()}} {{os.getppid()}}")
def result(status, error=None):
    with open(spec["result_path"], "w") as fh:
        json.dump({{"status": status, "zenml_run_id": "run-" + spec["run_key"], "error": error}}, fh)
print("stand-in child", mode, flush=True)
if mode == "ok":
    time.sleep(float(params.get("seconds", 0)))
    result("succeeded")
elif mode == "fail":
    time.sleep(float(params.get("seconds", 0)))
    result("failed", "asked to fail")
    sys.exit(1)
elif mode == "crash":
    print("something broke", flush=True)
    sys.exit(7)
elif mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(["sleep", "300"])
    open(spec["result_path"] + ".grandchild", "w").write(str(grandchild.pid))
    time.sleep(300)
elif mode == "sleep":
    time.sleep(float(params.get("seconds", 300)))
    result("succeeded")
"""


def write_stand_in(path: Path) -> Path:
    path.write_text(STAND_IN.format(python=sys.executable))
    path.chmod(0o755)
    return path


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class DaemonProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    out_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # the daemon dumps every thread's stack
            time.sleep(1)
            raise AssertionError(f"daemon did not stop within {timeout:.0f}s:\n{self.output[-6000:]}") from None

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.log_path.read_text(errors="replace")


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    daemons: list[DaemonProcess] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, zenml_config: Path, with_tinypipes: bool = True) -> Project:
        root.mkdir(parents=True, exist_ok=True)
        if with_tinypipes:
            shutil.copytree(TINYPIPES, root / "tinypipes", ignore=shutil.ignore_patterns("__pycache__"))
        return cls(root, base_env(zenml_config))

    @property
    def config(self) -> Path:
        return self.root / "schedules.yaml"

    @property
    def db_path(self) -> Path:
        return self.root / ".zenml-scheduler" / "state.db"

    def write_config(self, text: str) -> None:
        self.config.write_text(text)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scheduler", *args, "--config", str(self.config)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_daemon(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        host: str | None = None,
    ) -> DaemonProcess:
        """The daemon as a subprocess; with `host`, in a UTS namespace of its own under that host
        name (needs root), so it looks like a daemon on another machine to the lease."""
        n = len(self.daemons)
        command = [sys.executable, "-m", "scheduler", "run", "--config", str(self.config), "--log-format", "json"]
        if host is not None:  # unshare and sh exec into the daemon: the process is the daemon itself
            command = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *command]
        log_path, out_path = self.root / f"daemon-{n}.log", self.root / f"daemon-{n}.out"
        with open(log_path, "wb") as log, open(out_path, "wb") as out:
            process = subprocess.Popen(
                [*command, *args],
                cwd=self.root,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=log,
                preexec_fn=preexec_fn,
            )
        daemon = DaemonProcess(process, log_path, out_path)
        self.daemons.append(daemon)
        return daemon

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []  # schema not created yet
        finally:
            conn.close()

    def runs(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs ORDER BY id")

    def cleanup(self) -> None:
        for daemon in self.daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(timeout=10)
