"""Shared ZenML environment for tests that start ZenML child processes.

The test process itself never imports ZenML: children get an isolated
ZENML_CONFIG_PATH (one per test session, because creating the local store is
the slowest part of a first run) and store queries also run in a subprocess.

The session-wide store is the ``zenml_config`` fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PYTHON = sys.executable


def child_env(project_root: Path, zenml_config_dir: Path) -> dict[str, str]:
    """Environment for ``python -m scheduler.<child>`` in ``project_root``.

    Inherited ZENML_* variables are dropped so a developer's own ZenML setup
    (a server URL, a repository path) cannot leak into the tests. The
    repository root follows the project root on PYTHONPATH so ``scheduler``
    imports even from a checkout that is not pip-installed.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(
        ZENML_CONFIG_PATH=str(zenml_config_dir),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_COLORS_DISABLED="true",
        ZENML_ENABLE_RICH_TRACEBACK="false",
        ZENML_LOGGING_VERBOSITY="WARN",
        PYTHONPATH=os.pathsep.join([str(project_root), str(REPO_ROOT)]),
    )
    return env


def make_project(root: Path, *, with_training: bool = False) -> Path:
    """Lay out a project folder holding the test pipelines (and optionally training)."""
    root.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(FIXTURES / "tinypipes", root / "tinypipes", ignore=ignore)
    if with_training:
        shutil.copytree(REPO_ROOT / "pipelines", root / "pipelines", ignore=ignore)
        (root / "data").mkdir()
        shutil.copy2(REPO_ROOT / "data" / "train.csv", root / "data" / "train.csv")
    return root


# Under ``python -c`` ZenML cannot derive a source root (no __main__ file) and
# needs one to load stack flavors; any folder will do for reading.
_QUERY = """
import json, os, sys
from zenml.utils import source_utils
source_utils.set_custom_source_root(os.getcwd())
from zenml.client import Client
run = Client().get_pipeline_run(sys.argv[1], allow_name_prefix_match=False)
snapshot = run.snapshot
out = {
    "id": str(run.id),
    "name": run.name,
    "status": run.status.value,
    "end_time": run.end_time.isoformat() if run.end_time else None,
    "tags": sorted(t.name for t in run.tags),
    "steps": {n: s.status.value for n, s in run.steps.items()},
    "pipeline_source_type": snapshot.pipeline_spec.source.type.value,
    "step_source_types": {
        n: c.spec.source.type.value for n, c in snapshot.step_configurations.items()
    },
    "outputs": {},
}
for name, step in run.steps.items():
    for output, versions in step.outputs.items():
        value = versions[0].load() if output == "accuracy" else None
        out["outputs"][f"{name}.{output}"] = {"id": str(versions[0].id), "value": value}
model = Client().get_artifact_version("model") if "train_model" in run.steps else None
out["latest_model_run_id"] = str(model.producer_pipeline_run_id) if model else None
print(json.dumps(out))
"""


def describe_run(env: dict[str, str], name_or_id: str) -> dict[str, Any]:
    """Look a run up in the store of ``env`` from a separate process."""
    proc = subprocess.run(
        [PYTHON, "-c", _QUERY, name_or_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def init_store(config_dir: Path) -> None:
    """Create the local store once, so the first test does not pay for it."""
    env = child_env(REPO_ROOT, config_dir)
    code = "from zenml.client import Client; Client().active_stack_model"
    subprocess.run([PYTHON, "-c", code], env=env, check=True, timeout=300, capture_output=True)
