"""First use of a ZenML store by real children: a brand-new store, and a store with no active project.

These tests make their own ZENML_CONFIG_PATH instead of the session's `zenml_config`, which is
already initialised: the point is what children do to a store nobody has set up.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scheduler.child.store_setup import MARKER_FILE
from tests import zenml_env
from tests.child.test_launch import TINY, make_spec, run_child, start_child

pytestmark = pytest.mark.slow

_ADD_PROJECT = """
import os, sys
from zenml.utils import source_utils
source_utils.set_custom_source_root(os.getcwd())
from zenml.client import Client
Client().create_project(name=sys.argv[1], description="a second project for the test")
"""


def _launch(project: Path, env: dict[str, str], folder: Path) -> tuple[int, dict[str, Any], str]:
    folder.mkdir()
    return run_child(make_spec(project, folder, TINY), folder, env)


def test_simultaneous_first_launches_on_a_new_store_all_succeed(tmp_path: Path) -> None:
    project = zenml_env.make_project(tmp_path / "project")
    config_dir = tmp_path / "zenml-config"  # does not exist: no store yet
    env = zenml_env.child_env(project, config_dir)

    children = []
    for i in range(3):
        folder = tmp_path / f"child-{i}"
        folder.mkdir()
        spec = make_spec(project, folder, TINY, parameters={"label": f"first-{i}"})
        children.append((spec, start_child(spec, folder, env)))
    for spec, proc in children:
        output, _ = proc.communicate(timeout=300)
        result = json.loads(Path(spec["result_path"]).read_text(encoding="utf-8"))
        assert (proc.returncode, result["status"]) == (0, "succeeded"), output
        assert result["zenml_run_name"] == spec["run_name"]
    assert (config_dir / MARKER_FILE).exists()

    code, result, output = _launch(project, env, tmp_path / "later")
    assert (code, result["status"]) == (0, "succeeded"), output


def _without_active_project(config_dir: Path, env: dict[str, str], project: Path) -> None:
    """Break an initialised store the way that makes ZenML find no project: two projects, and a
    global config that lost its ``active_project_id`` (ZenML picks a project only when there is
    exactly one)."""
    subprocess.run([zenml_env.PYTHON, "-c", _ADD_PROJECT, "other"], cwd=project, env=env, check=True, timeout=120)
    config = config_dir / "config.yaml"
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    config.write_text("".join(ln for ln in lines if not ln.startswith("active_project_id:")), encoding="utf-8")


def _run_check(project: Path, env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    folder.mkdir()
    request = folder / "request.json"
    request.write_text(json.dumps({"project_root": str(project), "jobs": {}}), encoding="utf-8")
    return subprocess.run(
        [zenml_env.PYTHON, "-m", "scheduler.child.check", str(request), str(folder / "answer.json")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _fix_command(error: str) -> str:
    assert "the ZenML store has no active project" in error, error
    return error.split("to fix it, run: ", 1)[1].strip()


def test_a_store_without_active_project_fails_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    project = zenml_env.make_project(tmp_path / "project")
    config_dir = tmp_path / "zenml-config"
    env = zenml_env.child_env(project, config_dir)

    # The pipeline check initialises a new store (the daemon runs it before anything fires).
    check = _run_check(project, env, tmp_path / "check-new")
    assert check.returncode == 0, check.stderr
    assert (config_dir / MARKER_FILE).exists()
    _without_active_project(config_dir, env, project)

    # Broken after initialisation: the launch finds out at its first store access.
    code, result, output = _launch(project, env, tmp_path / "launch-broken")
    assert (code, result["status"], result["zenml_run_id"]) == (3, "failed", None), output
    command = _fix_command(result["error"])
    assert f"ZENML_CONFIG_PATH={config_dir}" in command
    assert command.endswith("project set default")

    # Broken before initialisation: the check (which initialises) says the same, as its last line.
    (config_dir / MARKER_FILE).unlink()
    check = _run_check(project, env, tmp_path / "check-broken")
    assert check.returncode == 1, check.stderr
    assert not (tmp_path / "check-broken" / "answer.json").exists()
    assert _fix_command(check.stderr.strip().splitlines()[-1]) == command

    # The command carries its own config path: run it where ZENML_CONFIG_PATH names a decoy.
    decoy = tmp_path / "decoy-zenml-config"
    fixed = subprocess.run(
        ["bash", "-c", command],
        env={**env, "ZENML_CONFIG_PATH": str(decoy)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert not decoy.exists()

    code, result, output = _launch(project, env, tmp_path / "launch-fixed")
    assert (code, result["status"]) == (0, "succeeded"), output
