"""Child processes: start one per run, follow it, stop it; report outcomes as data.

Each child runs `python -m scheduler.child spec.json` in its own session (so signals aimed at
the daemon's terminal do not reach it and we can stop its whole process group) with an
explicit environment. The child writes `result.json`; that file, not the exit code, is the
source of truth, which also lets a restarted daemon collect runs it did not spawn itself.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler import tuning
from scheduler.child.protocol import last_output_line, read_result
from scheduler.runs.procs import process_alive, process_start_ticks
from scheduler.store.outcomes import Outcome

log = logging.getLogger(__name__)

CHILD_MODULE = "scheduler.child"
REPAIR_MODULE = "scheduler.child.repair"
EXIT_CANNOT_START = 3


def child_env(base: Mapping[str, str], project_root: Path) -> dict[str, str]:
    """The environment of a child: the daemon's, plus what ZenML needs to run quietly from the project."""
    env = dict(base)
    python_path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(project_root) + (os.pathsep + python_path if python_path else "")
    env.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    env.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
    env["ZENML_LOGGING_COLORS_DISABLED"] = "true"
    env["ZENML_ENABLE_RICH_TRACEBACK"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Child:
    run_id: int
    pid: int
    pid_start: str | None
    run_dir: Path
    process: subprocess.Popen[bytes] | None  # None when adopted from a previous daemon
    job: str = ""
    started: float = field(default_factory=time.monotonic)
    stopping_since: float | None = None
    stop_reason: str | None = None
    stop_status: str = "cancelled"  # or timed_out

    @property
    def result_path(self) -> Path:
        return self.run_dir / "result.json"


class Runner:
    def __init__(
        self, python: str, runs_dir: Path, project_root: Path, kill_grace: float, base_env: Mapping[str, str]
    ) -> None:
        self.python = python
        self.runs_dir = runs_dir
        self.project_root = project_root
        self.kill_grace = kill_grace
        self.env = child_env(base_env, project_root)
        self.children: dict[int, Child] = {}
        self.repairs: dict[int, subprocess.Popen[bytes]] = {}

    def run_dir(self, run_id: int) -> Path:
        return self.runs_dir / str(run_id)

    def running(self, job: str) -> int:
        return sum(child.job == job for child in self.children.values())

    def overdue(self, timeouts: Mapping[str, float | None]) -> list[Child]:
        """Children running longer than their job's timeout and not being stopped yet."""
        now = time.monotonic()
        return [
            child
            for child in self.children.values()
            if child.stopping_since is None and (limit := timeouts.get(child.job)) and now - child.started > limit
        ]

    def start(self, run_id: int, spec: dict[str, Any]) -> Child:
        """Write the spec and spawn the child; raise OSError if it cannot be spawned."""
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_path = run_dir / "spec.json"
        spec = {**spec, "project_root": str(self.project_root), "result_path": str(run_dir / "result.json")}
        spec_path.write_text(json.dumps(spec, indent=2))
        with open(run_dir / "output.log", "ab") as output:
            process = subprocess.Popen(
                [self.python, "-m", CHILD_MODULE, str(spec_path)],
                cwd=self.project_root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(run_id, process.pid, process_start_ticks(process.pid), run_dir, process, str(spec.get("job", "")))
        self.children[run_id] = child
        return child

    def adopt(self, run_id: int, pid: int, pid_start: str | None, job: str = "", running_for: float = 0.0) -> bool:
        """Follow a child started by a previous daemon; False when it is no longer alive."""
        child = Child(run_id, pid, pid_start, self.run_dir(run_id), None, job, time.monotonic() - running_for)
        if not process_alive(pid, pid_start):
            return False
        self.children[run_id] = child
        return True

    def collect_orphan(self, run_id: int) -> Outcome:
        """The outcome of a run whose process is gone and was never followed: its result file, or lost."""
        return _outcome_from_result(Child(run_id, 0, None, self.run_dir(run_id), None), None) or Outcome(
            run_id,
            "lost",
            error="the daemon stopped while this run was active and its process is gone without a result",
        )

    def repair(self, run_id: int, zenml_run_name: str) -> None:
        """Mark the ZenML run of an ended run failed if it was left unfinished (e.g. after SIGKILL).
        It runs beside the scheduled runs and does not count against max_concurrent_runs."""
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "repair.log", "ab") as output:
            self.repairs[run_id] = subprocess.Popen(
                [self.python, "-m", REPAIR_MODULE, zenml_run_name, str(run_dir / "repair.json")],
                cwd=self.project_root, env=self.env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def poll_repairs(self) -> list[tuple[int, dict[str, Any] | None]]:
        """Reports of repairs that finished since the last call."""
        done = []
        for run_id, process in list(self.repairs.items()):
            if process.poll() is None:
                continue
            del self.repairs[run_id]
            try:
                report = json.loads((self.run_dir(run_id) / "repair.json").read_text())
            except (OSError, ValueError):
                report = None
            done.append((run_id, report))
        return done

    @property
    def active(self) -> int:
        return len(self.children)

    def poll(self) -> list[Outcome]:
        """Outcomes of children that ended since the last call; escalates pending stops."""
        finished: list[Outcome] = []
        for run_id, child in list(self.children.items()):
            exit_code = self._exit_code(child)
            if exit_code is _RUNNING:
                self._escalate(child)
                continue
            del self.children[run_id]
            finished.append(_outcome(child, exit_code))
        return finished

    def _exit_code(self, child: Child) -> Any:
        if child.process is not None:
            code = child.process.poll()
            return _RUNNING if code is None else code
        return _RUNNING if process_alive(child.pid, child.pid_start) else None

    def stop(self, run_id: int, reason: str, status: str = "cancelled") -> None:
        """Ask a child's whole process group to stop; SIGKILL follows after kill_grace.
        Its outcome will be `status` (cancelled or timed_out) unless it still succeeds."""
        child = self.children.get(run_id)
        if child is None or child.stopping_since is not None:
            return
        child.stopping_since, child.stop_reason, child.stop_status = time.monotonic(), reason, status
        log.info("stopping run %s (pid %s): %s", run_id, child.pid, reason)
        _signal_group(child.pid, signal.SIGTERM)

    def stop_all(self, reason: str) -> None:
        for run_id in list(self.children):
            self.stop(run_id, reason)

    def _escalate(self, child: Child) -> None:
        if child.stopping_since is not None and time.monotonic() - child.stopping_since > self.kill_grace:
            log.warning(
                "run %s (pid %s) ignored SIGTERM for %.0fs; sending SIGKILL", child.run_id, child.pid, self.kill_grace
            )
            _signal_group(child.pid, signal.SIGKILL)
            child.stopping_since = float("inf")  # SIGKILL sent; do not repeat


class _Running:
    pass


_RUNNING = _Running()


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass  # already gone: that is what we wanted
    except PermissionError:
        log.warning("not permitted to signal process group %s", pid)


def _outcome(child: Child, exit_code: int | None) -> Outcome:
    outcome = _outcome_from_result(child, exit_code)
    if outcome is not None:
        if child.stop_reason and outcome.status != "succeeded":
            return Outcome(
                outcome.run_id, child.stop_status, exit_code, outcome.zenml_run_id, outcome.zenml_run_name,
                child.stop_reason,
            )  # fmt: skip
        return outcome
    if child.stop_reason:
        return Outcome(child.run_id, child.stop_status, exit_code, error=child.stop_reason)
    if child.process is None:  # adopted from a previous daemon: we cannot know how it ended
        return Outcome(child.run_id, "lost", error="the run's process ended without reporting a result")
    if exit_code is not None and exit_code < 0:
        error = f"child killed by signal {signal.Signals(-exit_code).name} before reporting a result"
    elif exit_code is None:
        error = "child process ended without reporting a result"
    else:
        error = f"child exited with code {exit_code} without reporting a result"
    tail = last_output_line(child.run_dir / "output.log", tuning.LOG_TAIL_CHARS)
    return Outcome(child.run_id, "failed", exit_code, error=f"{error}{': ' + tail if tail else ''}")


def _outcome_from_result(child: Child, exit_code: int | None) -> Outcome | None:
    result = read_result(child.result_path)
    if result is None:
        return None
    return Outcome(child.run_id, result.status, exit_code, result.zenml_run_id, result.zenml_run_name, result.error)
