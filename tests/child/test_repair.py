"""The repair child against real runs in a temporary ZenML store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from scheduler.child import repair as zenml_repair
from tests import zenml_env

TINY = "tinypipes.tiny:tiny_pipeline"

# A run as the launch child leaves it when killed after ZenML created the run
# but before any step started: too brief a window to hit with a signal.
_CREATE_PLACEHOLDER = """
import os, sys
from zenml.utils import source_utils
source_utils.set_custom_source_root(os.getcwd())
from zenml.pipelines.run_utils import create_placeholder_run
from tinypipes.tiny import tiny_pipeline
name = sys.argv[1]
configured = tiny_pipeline.with_options(run_name=name, enable_cache=False)
print(create_placeholder_run(configured.create_snapshot(name=name)).status.value)
"""


@pytest.fixture(scope="module")
def repair_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zenml_env.make_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def env(repair_project: Path, zenml_config: Path) -> dict[str, str]:
    return zenml_env.child_env(repair_project, zenml_config)


def start_run(
    project: Path, tmp_path: Path, env: dict[str, str], **parameters: Any
) -> tuple[subprocess.Popen[str], str]:
    """Launch tiny_pipeline through the launch child, in its own process group."""
    run_name = f"repair-{uuid.uuid4().hex[:12]}"
    spec = {
        "run_key": run_name,
        "job": "repair-test",
        "pipeline": TINY,
        "project_root": str(project),
        "parameters": parameters,
        "steps": {},
        "enable_cache": False,
        "run_name": run_name,
        "tags": [],
        "result_path": str(tmp_path / "launch-result.json"),
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.Popen(
        [zenml_env.PYTHON, "-m", "scheduler.child", str(spec_path)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, run_name


def run_python(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [zenml_env.PYTHON, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def run_repair(project: Path, env: dict[str, str], run_name: str, result: Path) -> tuple[int, dict[str, Any]]:
    proc = run_python(project, env, "-m", "scheduler.child.repair", run_name, str(result))
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(result.read_text(encoding="utf-8")) == report
    return proc.returncode, report


@pytest.mark.slow
def test_sigkilled_run_is_marked_failed_once(repair_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    proc, run_name = start_run(repair_project, tmp_path, env, label="killed", marker_dir=str(markers), sleep_s=600)
    try:
        deadline = time.monotonic() + 120
        # The marker is written by the first step; then the second one sleeps.
        while not any(markers.glob("killed-*.txt")):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        while zenml_env.describe_run(env, run_name)["steps"].get("finish") != "running":
            assert time.monotonic() < deadline, "the sleeping step never started"
            time.sleep(0.2)
    finally:
        # The whole group at once: nothing may get a chance to close the run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)

    before = zenml_env.describe_run(env, run_name)
    assert before["status"] == "running"
    assert before["end_time"] is None

    code, report = run_repair(repair_project, env, run_name, tmp_path / "repair.json")
    assert code == 0, report
    assert report["found"] is True
    assert report["zenml_run_id"] == before["id"]
    assert report["action"] == "marked-failed"
    assert report["status_before"] == "running"
    assert report["status_after"] == "failed"
    assert report["steps_failed"] == ["finish"]
    assert report["steps_not_started"] == []
    after = zenml_env.describe_run(env, run_name)
    assert after["status"] == "failed"
    assert after["end_time"] is not None
    assert after["steps"] == {"write_marker": "completed", "finish": "failed"}

    code, again = run_repair(repair_project, env, run_name, tmp_path / "again.json")
    assert code == 0, again
    assert again["action"] == "none"
    assert again["status_before"] == again["status_after"] == "failed"
    assert again["end_time"] == report["end_time"]


@pytest.mark.slow
def test_run_without_started_steps_gets_an_end_time(repair_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    run_name = f"repair-{uuid.uuid4().hex[:12]}"
    created = run_python(repair_project, env, "-c", _CREATE_PLACEHOLDER, run_name)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1] == "initializing"

    code, report = run_repair(repair_project, env, run_name, tmp_path / "repair.json")
    assert code == 0, report
    assert report["action"] == "marked-failed"
    assert report["status_before"] == "initializing"
    assert report["steps_failed"] == []
    # The downstream step no longer holds the run open once its upstream failed.
    assert report["steps_not_started"] == ["write_marker"]
    after = zenml_env.describe_run(env, run_name)
    assert after["status"] == "failed"
    assert after["end_time"] is not None


@pytest.mark.slow
def test_completed_run_is_left_alone(repair_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    proc, run_name = start_run(repair_project, tmp_path, env, label="quick")
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    before = zenml_env.describe_run(env, run_name)
    assert before["status"] == "completed"

    code, report = run_repair(repair_project, env, run_name, tmp_path / "repair.json")
    assert code == 0, report
    assert report["action"] == "none"
    assert report["status_before"] == report["status_after"] == "completed"
    assert zenml_env.describe_run(env, run_name) == before


@pytest.mark.slow
def test_unknown_run_is_reported_not_found(repair_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    code, report = run_repair(repair_project, env, "repair-no-such-run", tmp_path / "repair.json")
    assert code == 0, report
    assert report == {"found": False, "run_name": "repair-no-such-run", "action": "none"}


@pytest.mark.parametrize("argv", [[], [""], ["a", "b", "c"]])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert zenml_repair.main(argv) == zenml_repair.EXIT_USAGE
    assert "usage" in capsys.readouterr().err


def test_failed_repair_exits_1_with_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(run_name: str) -> dict[str, Any]:
        raise RuntimeError("store unreachable")

    monkeypatch.setattr(zenml_repair, "repair", broken)
    assert zenml_repair.main(["some-run", str(tmp_path / "r.json")]) == zenml_repair.EXIT_ERROR
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == {"run_name": "some-run", "error": "RuntimeError: store unreachable"}
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8")) == report
