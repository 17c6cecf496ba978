"""The launch child as a real subprocess against a real (temporary) ZenML store."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import zenml_env

pytestmark = pytest.mark.slow

TINY = "tinypipes.tiny:tiny_pipeline"
TRAINING = "pipelines.training:training_pipeline"


@pytest.fixture(scope="module")
def launch_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Deliberately not a `zenml init` folder: the child must set the source
    # root itself.
    return zenml_env.make_project(tmp_path_factory.mktemp("project"), with_training=True)


@pytest.fixture(scope="module")
def env(launch_project: Path, zenml_config: Path) -> dict[str, str]:
    return zenml_env.child_env(launch_project, zenml_config)


def make_spec(project: Path, tmp_path: Path, pipeline: str, **overrides: Any) -> dict[str, Any]:
    run_name = f"test-{uuid.uuid4().hex[:12]}"
    spec: dict[str, Any] = {
        "run_key": run_name,
        "job": "test-job",
        "pipeline": pipeline,
        "project_root": str(project),
        "parameters": {},
        "steps": {},
        # Caching would skip the steps whose side effects the tests observe.
        "enable_cache": False,
        "run_name": run_name,
        "tags": ["scheduler-test"],
        "result_path": str(tmp_path / "result.json"),
    }
    spec.update(overrides)
    return spec


def start_child(spec: dict[str, Any], tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    return subprocess.Popen(
        [zenml_env.PYTHON, "-m", "scheduler.child", str(spec_path)],
        cwd=spec["project_root"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_child(
    spec: dict[str, Any], tmp_path: Path, env: dict[str, str], timeout: float = 180
) -> tuple[int, dict[str, Any], str]:
    proc = start_child(spec, tmp_path, env)
    output, _ = proc.communicate(timeout=timeout)
    result = json.loads(Path(spec["result_path"]).read_text(encoding="utf-8"))
    return proc.returncode, result, output


def test_training_pipeline_end_to_end(launch_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = make_spec(
        launch_project,
        tmp_path,
        TRAINING,
        parameters={"model_type": "gradient_boosting"},
        steps={"preprocess": {"parameters": {"test_size": 0.25}}},
    )
    code, result, output = run_child(spec, tmp_path, env)

    assert code == 0, output
    assert result["status"] == "succeeded"
    assert result["error"] is None
    assert result["zenml_run_name"] == spec["run_name"]
    assert result["zenml_status"] == "completed"
    assert result["started_at"] <= result["finished_at"]
    assert spec["run_name"] in output

    run = zenml_env.describe_run(env, result["zenml_run_id"])
    assert run["name"] == spec["run_name"]
    assert run["status"] == "completed"
    assert "scheduler-test" in run["tags"]
    # The source root was the project root, so ZenML could record real sources.
    assert run["pipeline_source_type"] == "user"
    assert set(run["step_source_types"].values()) == {"user"}
    assert run["outputs"]["evaluate.accuracy"]["value"] > 0.6
    assert run["latest_model_run_id"] == result["zenml_run_id"]


def test_failing_run_reports_failure_and_run_id(launch_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = make_spec(launch_project, tmp_path, TINY, parameters={"label": "boom", "fail": True})
    code, result, output = run_child(spec, tmp_path, env)

    assert code == 1, output
    assert result["status"] == "failed"
    assert result["zenml_run_id"]
    assert result["zenml_status"] == "failed"
    assert "finish" in result["error"]
    assert "asked to fail" in result["error"]
    run = zenml_env.describe_run(env, spec["run_name"])
    assert run["id"] == result["zenml_run_id"]
    assert run["steps"]["finish"] == "failed"


def test_sigterm_stops_a_long_run_promptly(launch_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    spec = make_spec(
        launch_project,
        tmp_path,
        TINY,
        parameters={"label": "long", "marker_dir": str(markers), "sleep_s": 300},
    )
    proc = start_child(spec, tmp_path, env)
    try:
        deadline = time.monotonic() + 120
        while not any(markers.glob("long-*.txt")):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        time.sleep(0.5)  # let the sleeping step get under way
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
        elapsed = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert elapsed < 8, f"took {elapsed:.1f}s to stop"
    assert proc.returncode == 1, output
    result = json.loads(Path(spec["result_path"]).read_text(encoding="utf-8"))
    assert result["status"] in ("cancelled", "failed")
    assert result["zenml_run_id"]
    run = zenml_env.describe_run(env, spec["run_name"])
    assert run["status"] not in ("running", "initializing", "provisioning")
    assert run["end_time"] is not None


def test_missing_module_cannot_start(launch_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = make_spec(launch_project, tmp_path, "tinypipes.missing:tiny_pipeline")
    code, result, output = run_child(spec, tmp_path, env)

    assert code == 3, output
    assert result["status"] == "failed"
    assert result["zenml_run_id"] is None
    assert "module 'tinypipes.missing' not found" in result["error"]
    assert str(launch_project) in result["error"]


def test_invalid_parameter_cannot_start(launch_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = make_spec(launch_project, tmp_path, TINY, parameters={"sleep_s": "abc"})
    code, result, output = run_child(spec, tmp_path, env)

    assert code == 3, output
    assert result["status"] == "failed"
    assert result["zenml_run_id"] is None
    assert "ValueError" in result["error"]
    assert "sleep_s" in result["error"]


def test_bad_spec_cannot_start(launch_project: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = make_spec(launch_project, tmp_path, TINY)
    del spec["run_name"]
    code, result, output = run_child(spec, tmp_path, env, timeout=60)

    assert code == 3, output
    assert result["status"] == "failed"
    assert "run_name" in result["error"]


def _assert_taken_name_result(code: int, result: dict[str, Any], output: str, run_name: str) -> None:
    assert code == 3, output
    assert result["status"] == "failed"
    assert result["error"].startswith(f"a ZenML run named {run_name!r} already exists"), result["error"]
    # The existing run is someone else's: nothing of it is reported as this launch's.
    assert (result["zenml_run_id"], result["zenml_run_name"], result["zenml_status"]) == (None, None, None)


# The launch child with its pre-call name check disabled: as if the other run had been created
# between that check and the pipeline call.
_LATE_CONFLICT = """
import sys
import scheduler.child.launch as launch
launch.ensure_name_free = lambda run_name: None
sys.exit(launch.main(sys.argv[1:]))
"""


def test_a_taken_run_name_fails_without_reporting_the_other_run(
    launch_project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    first = make_spec(launch_project, tmp_path / "first", TINY)
    (tmp_path / "first").mkdir()
    code, existing, output = run_child(first, tmp_path / "first", env)
    assert code == 0, output

    # As another daemon, with a state database of its own, would launch under the same name:
    # refused by the check before the pipeline is called...
    (tmp_path / "second").mkdir()
    second = make_spec(launch_project, tmp_path / "second", TINY, run_name=first["run_name"])
    code, result, output = run_child(second, tmp_path / "second", env)
    _assert_taken_name_result(code, result, output, first["run_name"])

    # ...and by ZenML itself when the name was taken between that check and the call.
    folder = tmp_path / "third"
    folder.mkdir()
    third = make_spec(launch_project, folder, TINY, run_name=first["run_name"])
    (folder / "spec.json").write_text(json.dumps(third), encoding="utf-8")
    proc = subprocess.run(
        [zenml_env.PYTHON, "-c", _LATE_CONFLICT, str(folder / "spec.json")],
        cwd=launch_project, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    result = json.loads(Path(third["result_path"]).read_text(encoding="utf-8"))
    _assert_taken_name_result(proc.returncode, result, proc.stdout + proc.stderr, first["run_name"])
    assert "EntityExistsError" in proc.stdout + proc.stderr  # it did get as far as ZenML's refusal

    run = zenml_env.describe_run(env, first["run_name"])
    assert (run["id"], run["status"]) == (existing["zenml_run_id"], "completed")
