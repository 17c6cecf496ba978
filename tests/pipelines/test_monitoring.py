"""The drift monitoring pipeline: its statistics as tables, then real runs on the bundled samples.

The test process never imports ZenML, and ``pipelines.monitoring`` does, so the tables are
evaluated in one child process and the tests read its answers. The end-to-end part starts
real launch children side by side (two drift checks and the retrain on the drifted file) and
reads the runs back from yet another process, as an ``after:`` trigger would.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import zenml_env
from tests.child.test_launch import make_spec
from tests.pipelines.test_batch_inference import Launch, run_children

# The tables are computed by a process that imports ZenML and the end-to-end tests run pipelines:
# the whole module stays on one xdist worker (with the suite's other ZenML runs), which also
# keeps its module fixtures from being set up once per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zenml")]

MONITORING = "pipelines.monitoring:drift_pipeline"
TRAINING = "pipelines.training:training_pipeline"
SAMPLES = zenml_env.REPO_ROOT / "data" / "samples"
FEATURES = ["feature_1", "feature_2", "feature_3", "feature_4", "feature_5"]
NAN = math.nan

_rng = np.random.default_rng(7)
NORMAL = np.round(_rng.normal(0.0, 1.0, 2000), 4).tolist()
NORMAL_AGAIN = np.round(_rng.normal(0.0, 1.0, 2000), 4).tolist()
SHIFTED = [v + 1.0 for v in NORMAL_AGAIN]
WIDER = [v * 2.0 for v in NORMAL_AGAIN]
# A floor: 30% zeros, the rest positive; its drift below the floor must not hide in the bottom bin.
FLOORED = [0.0] * 600 + [abs(v) + 0.01 for v in NORMAL[:1400]]

# (id, reference, current, expected): a number is compared with a tolerance, a pair
# (low, high) bounds the value, "ValueError: <words>" expects that error.
PSI_CASES = [
    ("identical samples", NORMAL, NORMAL, 0.0),
    ("same distribution, new draws", NORMAL, NORMAL_AGAIN, (0.0, 0.05)),
    ("mean shifted one sd", NORMAL, SHIFTED, (0.5, 2.0)),
    ("spread doubled", NORMAL, WIDER, (0.3, 2.0)),
    ("constant, unchanged", [3.0] * 50, [3.0] * 20, 0.0),
    ("constant moved up", [3.0] * 50, [4.0] * 20, (9.0, 20.0)),
    ("constant moved down", [3.0] * 50, [2.0] * 20, (9.0, 20.0)),
    ("floor, unchanged", FLOORED, FLOORED[::2], (0.0, 0.01)),
    ("floor, moved below", FLOORED, [-1.0] * 600 + FLOORED[600:], (1.0, 20.0)),
    ("missing values alike", [1.0, 2.0, NAN, 4.0], [1.0, 2.0, NAN, 4.0], 0.0),
    ("missing share 0 -> 50%", NORMAL, NORMAL_AGAIN[:1000] + [NAN] * 1000, (3.0, 20.0)),
    ("infinities count as missing", [1.0, 2.0, 3.0, NAN], [1.0, 2.0, 3.0, math.inf], 0.0),
    ("reference all missing, current too", [NAN] * 5, [NAN] * 3, 0.0),
    ("reference all missing, current observed", [NAN] * 5, [1.0, 2.0], (9.0, 20.0)),
    ("no current values", [1.0, 2.0], [], "ValueError: at least one value in each sample"),
]
KS_CASES = [
    ("identical samples", NORMAL, NORMAL, 0.0),
    ("same distribution, new draws", NORMAL, NORMAL_AGAIN, (0.0, 0.05)),
    ("mean shifted one sd", NORMAL, SHIFTED, (0.33, 0.43)),  # Phi(0.5) - Phi(-0.5) = 0.383
    ("disjoint", [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], 1.0),
    ("half overlapping", [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0], 0.5),
    ("constant, unchanged", [3.0] * 50, [3.0] * 20, 0.0),
    ("constant moved", [3.0] * 50, [2.0] * 20, 1.0),
    ("missing values ignored", [1.0, 2.0, 3.0, NAN], [1.0, NAN, 2.0, 3.0, NAN], 0.0),
    ("current all missing", [1.0, 2.0], [NAN, NAN], 1.0),
    ("both all missing", [NAN], [NAN, NAN], 0.0),
]

REFERENCE = {
    "feature_1": [0.1, 0.5, 0.9, 1.3, 1.7, 2.1],
    "feature_2": [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
    "label": ["a", "b", "a", "b", "a", "b"],  # text: not a feature
    "target": [0, 1, 0, 1, 0, 1],  # the target: not a feature
}
REPORT_CASES = [
    (
        "only the moved feature drifts",
        {"feature_1": [0.1, 0.5, 0.9, 1.3, 1.7, 2.1], "feature_2": [9.0, 9.5, 10.0, 10.5, 11.0, 11.5]},
        0.2,
        {"drifted": True, "drifted_features": ["feature_2"], "features": ["feature_1", "feature_2"], "rows": 6},
    ),
    (
        "same values in another order, no target, an extra column",
        {"feature_1": [2.1, 1.7, 1.3, 0.9, 0.5, 0.1], "feature_2": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "extra": [1] * 6},
        0.2,
        {"drifted": False, "drifted_features": [], "features": ["feature_1", "feature_2"], "rows": 6},
    ),
    (
        "text in a numeric column counts as missing",
        {"feature_1": ["0.1", "n/a", "n/a", "n/a", "1.7", "2.1"], "feature_2": [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]},
        0.2,
        {"drifted": True, "drifted_features": ["feature_1"], "features": ["feature_1", "feature_2"], "rows": 6},
    ),
    ("a feature column missing", {"feature_2": [1.0]}, 0.2, "ValueError: lacks the feature column(s) feature_1"),
    ("no rows", {"feature_1": [], "feature_2": []}, 0.2, "ValueError: holds no rows"),
]
THRESHOLD_CASES = [
    (0.2, 0.2),
    (1e-6, 1e-6),
    (0.0, "ValueError: threshold must be a positive number"),
    (-0.1, "ValueError: threshold must be a positive number"),
    (NAN, "ValueError: threshold must be a positive number"),
    (math.inf, "ValueError: threshold must be a positive number"),
]

# Evaluates every table in one process: {case id: {"value": ...} or {"error": "..."}}.
_TABLES = """
import json, sys
import pandas as pd
from pipelines.monitoring import check_threshold, drift_report, ks_statistic, population_stability_index

def evaluate(kind, case):
    if kind == "psi":
        return population_stability_index(case["reference"], case["current"])
    if kind == "ks":
        return ks_statistic(case["reference"], case["current"])
    if kind == "threshold":
        return check_threshold(case["threshold"])
    report = drift_report(pd.DataFrame(case["reference"]), pd.DataFrame(case["current"]), case["threshold"])
    return {"drifted": report["drifted"], "drifted_features": report["drifted_features"],
            "features": sorted(report["psi"]), "ks_features": sorted(report["ks"]), "rows": report["rows_current"],
            "drift_score": report["drift_score"], "psi": report["psi"]}

out = {}
for kind, case in json.load(sys.stdin):
    try:
        out[f"{kind}:{case['id']}"] = {"value": evaluate(kind, case)}
    except ValueError as exc:
        out[f"{kind}:{case['id']}"] = {"error": f"ValueError: {exc}"}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cases = [("psi", {"id": i, "reference": r, "current": c}) for i, r, c, _ in PSI_CASES]
    cases += [("ks", {"id": i, "reference": r, "current": c}) for i, r, c, _ in KS_CASES]
    cases += [
        ("report", {"id": i, "reference": REFERENCE, "current": c, "threshold": t}) for i, c, t, _ in REPORT_CASES
    ]
    cases += [("threshold", {"id": str(t), "threshold": t}) for t, _ in THRESHOLD_CASES]
    env = zenml_env.child_env(zenml_env.REPO_ROOT, tmp_path_factory.mktemp("zenml-unused"))
    proc = subprocess.run(
        [zenml_env.PYTHON, "-c", _TABLES],
        input=json.dumps(cases),
        cwd=zenml_env.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check(answer: dict[str, Any], expected: Any) -> None:
    if isinstance(expected, str) and expected.startswith("ValueError: "):
        error = answer.get("error", "")
        assert error.startswith("ValueError: "), answer
        assert expected.removeprefix("ValueError: ") in error
        return
    assert "error" not in answer, answer["error"]
    value = answer["value"]
    if isinstance(expected, tuple):
        low, high = expected
        assert low <= value <= high
    else:
        assert value == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("case", "expected"), [(c[0], c[3]) for c in PSI_CASES], ids=[c[0] for c in PSI_CASES])
def test_population_stability_index(tables: dict[str, Any], case: str, expected: Any) -> None:
    check(tables[f"psi:{case}"], expected)


@pytest.mark.parametrize(("case", "expected"), [(c[0], c[3]) for c in KS_CASES], ids=[c[0] for c in KS_CASES])
def test_ks_statistic(tables: dict[str, Any], case: str, expected: Any) -> None:
    check(tables[f"ks:{case}"], expected)


@pytest.mark.parametrize(("case", "expected"), [(c[0], c[3]) for c in REPORT_CASES], ids=[c[0] for c in REPORT_CASES])
def test_drift_report(tables: dict[str, Any], case: str, expected: Any) -> None:
    answer = tables[f"report:{case}"]
    if isinstance(expected, str):
        check(answer, expected)
        return
    assert "error" not in answer, answer["error"]
    report = answer["value"]
    assert {k: report[k] for k in expected} == expected
    assert report["ks_features"] == report["features"]
    assert report["drift_score"] == max(report["psi"].values())


@pytest.mark.parametrize(("threshold", "expected"), THRESHOLD_CASES, ids=[str(t) for t, _ in THRESHOLD_CASES])
def test_threshold_must_be_a_positive_number(tables: dict[str, Any], threshold: float, expected: Any) -> None:
    check(tables[f"threshold:{threshold}"], expected)


def test_bundled_data_is_what_make_dataset_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("make_dataset", zenml_env.REPO_ROOT / "scripts" / "make_dataset.py")
    assert spec and spec.loader
    make_dataset = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_dataset", make_dataset)  # its dataclass looks itself up there
    spec.loader.exec_module(make_dataset)
    assert {d.path.name for d in make_dataset.BUNDLED} == {"train.csv", "current.csv", "drifted.csv"}
    for dataset in make_dataset.BUNDLED:
        features, target = make_dataset.make_rows(dataset.rows, dataset.seed, drifted=dataset.drifted)
        make_dataset.write_csv(tmp_path / dataset.path.name, features, target)
        assert (tmp_path / dataset.path.name).read_bytes() == dataset.path.read_bytes(), dataset.path


# Run-level metadata and the report artifact of each drift run, read as a trigger would.
_RUN_QUERY = """
import json, os, sys
from zenml.utils import source_utils
source_utils.set_custom_source_root(os.getcwd())
from zenml.client import Client
out = {}
for run_id in sys.argv[1:]:
    run = Client().get_pipeline_run(run_id, include_full_metadata=True)
    report = run.steps["measure_drift"].outputs["drift_report"][0].load()
    out[run_id] = {"metadata": dict(run.run_metadata), "report": report}
print(json.dumps(out))
"""


def e2e_chain(project: Path, env: dict[str, str], folder: Path) -> dict[str, Any]:
    """Check both samples for drift and retrain on the drifted one, side by side; read the runs back."""
    cases = {
        "current": (MONITORING, {"current_url": "data/samples/current.csv"}),
        "drifted": (MONITORING, {"current_url": "data/samples/drifted.csv"}),
        # What a retrain-on-drift job runs: the training pipeline on the file the check looked at.
        "retrain": (TRAINING, {"data_url": "data/samples/drifted.csv"}),
    }
    specs = []
    for name, (pipeline, parameters) in cases.items():
        (folder / name).mkdir()
        specs.append((make_spec(project, folder / name, pipeline, parameters=parameters), folder / name))
    launches = dict(zip(cases, run_children(specs, env), strict=True))
    run_ids = [launches[name].result.get("zenml_run_id") for name in ("current", "drifted")]
    proc = subprocess.run(
        [zenml_env.PYTHON, "-c", _RUN_QUERY, *filter(None, run_ids)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    runs = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    return {"launches": launches, "runs": runs, "query_error": proc.stderr}


@pytest.fixture(scope="module")
def e2e(zenml_config: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = zenml_env.make_project(tmp_path_factory.mktemp("project"), with_training=True)
    shutil.copytree(SAMPLES, project / "data" / "samples")
    return e2e_chain(project, zenml_env.child_env(project, zenml_config), tmp_path_factory.mktemp("drift"))


def drift_run(e2e: dict[str, Any], name: str) -> dict[str, Any]:
    chain = e2e
    launch: Launch = chain["launches"][name]
    assert launch.code == 0, launch.output
    assert launch.result["zenml_status"] == "completed"
    assert chain["runs"], chain["query_error"]
    return chain["runs"][launch.result["zenml_run_id"]]


RUN_KEYS = {
    "drift_score", "drifted", "drifted_features", "psi", "ks", "threshold",
    "rows_reference", "rows_current", "reference_url", "current_url",
}  # fmt: skip


def test_drifted_sample_is_flagged_in_run_metadata(e2e: dict[str, Any]) -> None:
    run = drift_run(e2e, "drifted")
    metadata = run["metadata"]

    # Run-level keys, not "measure_drift::..." step keys: what a condition on the run reads.
    assert set(metadata) == RUN_KEYS
    assert metadata["drift_score"] > 0.2
    assert metadata["drifted"] is True
    assert metadata["drifted_features"] == ["feature_1", "feature_2", "feature_3"]
    assert sorted(metadata["psi"]) == sorted(metadata["ks"]) == FEATURES
    assert metadata["drift_score"] == max(metadata["psi"].values())
    assert metadata["ks"]["feature_1"] > 0.2 > metadata["ks"]["feature_4"]
    assert metadata["rows_current"] == 300
    assert metadata["rows_reference"] == 600
    assert metadata["current_url"] == "data/samples/drifted.csv"
    assert metadata["reference_url"] == "data/train.csv"
    assert metadata["threshold"] == 0.2
    assert run["report"] == metadata


def test_current_sample_is_not_flagged(e2e: dict[str, Any]) -> None:
    metadata = drift_run(e2e, "current")["metadata"]

    assert metadata["drift_score"] < 0.2
    assert metadata["drifted"] is False
    assert metadata["drifted_features"] == []
    assert metadata["current_url"] == "data/samples/current.csv"


def test_training_pipeline_retrains_on_the_drifted_sample(e2e: dict[str, Any]) -> None:
    launch: Launch = e2e["launches"]["retrain"]

    assert launch.code == 0, launch.output
    assert launch.result["zenml_status"] == "completed"
