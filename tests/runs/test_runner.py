"""Child-process handling with real processes: outcomes, stop escalation, process groups, adoption.

The child here is a stand-in interpreter (no ZenML) so that each behaviour - success, a crash,
ignoring SIGTERM, leaving a grandchild - can be produced on purpose in well under a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from scheduler.runs.runner import Runner
from scheduler.store.outcomes import Outcome
from tests.harness import write_stand_in


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    python = write_stand_in(tmp_path / "python")
    return Runner(str(python), tmp_path / "runs", tmp_path, kill_grace=1.0, base_env=os.environ)


def spec(mode: str, **params: object) -> dict[str, object]:
    return {"job": "j", "run_key": f"j@{mode}", "pipeline": "a.b:c", "parameters": {"mode": mode, **params}}


def group_members(pgid: int) -> list[int]:
    """Live PIDs in process group `pgid` (zombies are dead already; they only wait for a reaper)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def wait_outcomes(runner: Runner, timeout: float = 20) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcomes = runner.poll()
        if outcomes:
            return outcomes
        time.sleep(0.05)
    raise AssertionError("no outcome in time")


def test_result_file_decides_the_outcome(runner: Runner) -> None:
    child = runner.start(1, spec("ok"))
    assert child.pid > 0 and runner.active == 1
    [outcome] = wait_outcomes(runner)
    assert outcome == Outcome(1, "succeeded", 0, "run-j@ok", None, None)
    assert runner.active == 0
    assert "stand-in child ok" in (runner.run_dir(1) / "output.log").read_text()
    assert '"project_root"' in (runner.run_dir(1) / "spec.json").read_text()


def test_exit_without_result_is_a_failure_with_the_log_tail(runner: Runner) -> None:
    runner.start(2, spec("crash"))
    [outcome] = wait_outcomes(runner)
    assert outcome.status == "failed" and outcome.exit_code == 7
    assert outcome.error == "child exited with code 7 without reporting a result: something broke"


def test_stop_escalates_to_sigkill_and_takes_the_whole_group(runner: Runner) -> None:
    child = runner.start(3, spec("ignore-term"))
    marker = Path(str(child.result_path) + ".grandchild")
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(marker.read_text()) in group_members(child.pid)  # the grandchild shares the group
    started = time.monotonic()
    runner.stop(3, "interrupted by daemon shutdown")
    [outcome] = wait_outcomes(runner)
    assert 0.9 < time.monotonic() - started < 10  # SIGTERM was ignored; SIGKILL after kill_grace
    assert outcome.status == "cancelled" and outcome.exit_code == -signal.SIGKILL
    assert outcome.error == "interrupted by daemon shutdown"
    time.sleep(0.2)
    assert group_members(child.pid) == []  # nothing of the child's process group is left running


def test_adopted_process_is_followed_to_its_result(runner: Runner, tmp_path: Path) -> None:
    # A child started by a "previous daemon": not our child, so only its PID and result file tell.
    run_dir = runner.run_dir(4)
    run_dir.mkdir(parents=True)
    spec_path = run_dir / "spec.json"
    import json

    spec_path.write_text(json.dumps({**spec("sleep", seconds=1), "result_path": str(run_dir / "result.json")}))
    previous = subprocess.Popen([runner.python, "-m", "scheduler.child", str(spec_path)], start_new_session=True)
    from scheduler.runs.procs import process_start_ticks

    assert runner.adopt(4, previous.pid, process_start_ticks(previous.pid))
    assert not runner.adopt(5, previous.pid, "1")  # same PID, other start time: not the same process
    previous.wait(timeout=20)
    [outcome] = wait_outcomes(runner)
    assert outcome.run_id == 4 and outcome.status == "succeeded" and outcome.exit_code is None


def test_orphan_without_result_is_lost(runner: Runner) -> None:
    assert runner.collect_orphan(6).status == "lost"
