"""The batch inference pipeline, run by real launch children against real ZenML stores.

A cold child costs 8-15 s on two cores and mostly keeps one busy, so the
module's children run once, in three independent chains side by side (the
local SQLite store takes concurrent runs); each test then inspects its chain.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import zenml_env
from tests.child.test_launch import make_spec, start_child

pytestmark = pytest.mark.slow

INFERENCE = "pipelines.batch_inference:batch_inference_pipeline"
TRAINING = "pipelines.training:training_pipeline"
SAMPLE = zenml_env.REPO_ROOT / "data" / "samples" / "new_batch.csv"
SAMPLE_PARAM = "data/samples/new_batch.csv"  # relative to the project root

# What each scoring step returned and which artifact versions it loaded, by run id.
_STEP_QUERY = """
import json, os, sys
from zenml.utils import source_utils
source_utils.set_custom_source_root(os.getcwd())
from zenml.client import Client
client = Client()
out = {"latest_model": str(client.get_artifact_version("model").id)}
for run_id in sys.argv[1:]:
    step = client.get_pipeline_run(run_id).steps["score_batch"]
    out[run_id] = {
        "rows_scored": step.outputs["rows_scored"][0].load(),
        "inputs": {name: [str(v.id) for v in versions] for name, versions in step.inputs.items()},
    }
print(json.dumps(out))
"""


@dataclass
class Launch:
    code: int
    result: dict[str, Any]
    output: str


def run_children(specs: list[tuple[dict[str, Any], Path]], env: dict[str, str]) -> list[Launch]:
    """Start one child per (spec, own folder) at once, then wait for all of them."""
    procs = [start_child(spec, folder, env) for spec, folder in specs]
    try:
        launches = []
        for proc, (spec, _) in zip(procs, specs, strict=True):
            output, _ = proc.communicate(timeout=300)
            result_path = Path(spec["result_path"])
            result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else {}
            launches.append(Launch(proc.returncode, result, output))
        return launches
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def no_model_chain(project: Path, folder: Path) -> Launch:
    """Score against a fresh store, which has never seen a model (the session store may have one)."""
    config_dir = folder / "zenml-config"
    zenml_env.init_store(config_dir)
    spec = make_spec(project, folder, INFERENCE, parameters={"input_path": SAMPLE_PARAM})
    return run_children([(spec, folder)], zenml_env.child_env(project, config_dir))[0]


def bad_parameters_chain(project: Path, env: dict[str, str], folder: Path) -> dict[str, Launch]:
    """Neither and both of input_path / input_paths, keyed by the words the error must use."""
    cases = {"got neither": {}, "got both": {"input_path": "a.csv", "input_paths": ["b.csv"]}}
    specs = []
    for index, parameters in enumerate(cases.values()):
        (folder / str(index)).mkdir()
        specs.append((make_spec(project, folder / str(index), INFERENCE, parameters=parameters), folder / str(index)))
    return dict(zip(cases, run_children(specs, env), strict=True))


def scoring_chain(project: Path, env: dict[str, str], folder: Path) -> dict[str, Any]:
    """Train a model in the session store, then score per file and per batch side by side."""
    (folder / "train").mkdir()
    spec = make_spec(project, folder / "train", TRAINING, parameters={"data_url": "data/train.csv"})
    (trained,) = run_children([(spec, folder / "train")], env)
    assert trained.code == 0, trained.output

    import pandas as pd

    # A Parquet input with a target column, which scoring must not use as a feature.
    second = folder / "incoming" / "second_batch.parquet"
    second.parent.mkdir()
    frame = pd.read_csv(SAMPLE).head(7)
    frame["target"] = 1
    frame.to_parquet(second)

    batch_out = folder / "predictions"
    cases = {
        # Relative: resolves against the project root, the child's working directory.
        "per_file": {"input_path": SAMPLE_PARAM, "output_dir": "out/per-file"},
        "per_batch": {"input_paths": [SAMPLE_PARAM, str(second)], "output_dir": str(batch_out)},
    }
    specs = []
    for name, parameters in cases.items():
        (folder / name).mkdir()
        specs.append((make_spec(project, folder / name, INFERENCE, parameters=parameters), folder / name))
    file_launch, batch_launch = run_children(specs, env)

    run_ids = [launch.result.get("zenml_run_id") for launch in (file_launch, batch_launch)]
    proc = subprocess.run(
        [zenml_env.PYTHON, "-c", _STEP_QUERY, *filter(None, run_ids)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return {
        "per_file": (file_launch, project / "out" / "per-file"),
        "per_batch": (batch_launch, batch_out),
        "steps": json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {},
        "query_error": proc.stderr,
    }


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = zenml_env.make_project(tmp_path_factory.mktemp("project"), with_training=True)
    shutil.copytree(SAMPLE.parent, root / "data" / "samples")
    return root


@pytest.fixture(scope="module")
def chains(project_root: Path, zenml_config: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[Any]]:
    """The finished chains; a test unwraps only its own, so one chain's error fails only its tests."""
    env = zenml_env.child_env(project_root, zenml_config)
    with ThreadPoolExecutor(max_workers=3) as pool:
        return {
            "no_model": pool.submit(no_model_chain, project_root, tmp_path_factory.mktemp("no-model")),
            "bad_parameters": pool.submit(bad_parameters_chain, project_root, env, tmp_path_factory.mktemp("bad")),
            "scoring": pool.submit(scoring_chain, project_root, env, tmp_path_factory.mktemp("scoring")),
        }


def test_no_trained_model_fails_clearly(project_root: Path, chains: dict[str, Future[Any]]) -> None:
    launch: Launch = chains["no_model"].result()

    assert launch.code == 1, launch.output
    assert launch.result["status"] == "failed"
    assert "no trained model found" in launch.result["error"]
    assert "run the training pipeline first" in launch.result["error"]
    assert not (project_root / "data" / "predictions").exists()


def test_per_file_writes_predictions(chains: dict[str, Future[Any]]) -> None:
    scored = chains["scoring"].result()
    launch, out = scored["per_file"]

    assert launch.code == 0, launch.output
    assert launch.result["status"] == "succeeded"
    assert launch.result["zenml_status"] == "completed"
    rows, source = read_rows(out / "new_batch.csv"), read_rows(SAMPLE)
    assert len(rows) == len(source) == 20
    assert list(rows[0]) == [*source[0], "prediction", "probability"]
    assert {row["prediction"] for row in rows} <= {"0", "1"}
    assert all(0.0 <= float(row["probability"]) <= 1.0 for row in rows)
    assert [float(row["feature_1"]) for row in rows] == [float(row["feature_1"]) for row in source]
    assert [p.name for p in out.iterdir()] == ["new_batch.csv"]  # no temporary file left behind
    assert scored["steps"], scored["query_error"]
    assert scored["steps"][launch.result["zenml_run_id"]]["rows_scored"] == 20


def test_per_batch_writes_one_file_per_input(chains: dict[str, Future[Any]]) -> None:
    scored = chains["scoring"].result()
    launch, out = scored["per_batch"]

    assert launch.code == 0, launch.output
    assert launch.result["status"] == "succeeded"
    assert sorted(p.name for p in out.iterdir()) == ["new_batch.csv", "second_batch.csv"]
    assert len(read_rows(out / "new_batch.csv")) == 20
    second_rows = read_rows(out / "second_batch.csv")
    assert len(second_rows) == 7
    assert "target" in second_rows[0]
    assert {row["prediction"] for row in second_rows} <= {"0", "1"}
    assert scored["steps"], scored["query_error"]
    step = scored["steps"][launch.result["zenml_run_id"]]
    assert step["rows_scored"] == 27
    # The step records the model version it loaded (the latest) among its inputs.
    assert step["inputs"] == {"model": [scored["steps"]["latest_model"]]}


def test_needs_exactly_one_input_parameter(chains: dict[str, Future[Any]]) -> None:
    for expected, launch in chains["bad_parameters"].result().items():
        # Rejected while the pipeline body is compiled: no ZenML run exists.
        assert launch.code == 3, launch.output
        assert launch.result["status"] == "failed"
        assert launch.result["zenml_run_id"] is None
        assert "exactly one of input_path" in launch.result["error"]
        assert expected in launch.result["error"]
