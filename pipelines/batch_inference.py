"""Batch inference pipeline: score newly landed files with the latest trained model.

Give exactly one of ``input_path`` (one file: a watch job's per-file dispatch) or
``input_paths`` (a list: per-batch dispatch). Each CSV or Parquet input is scored
with the latest version of the ``model`` artifact that ``pipelines.training``
stores, and its predictions land in ``<output_dir>/<stem>.csv``: the input's
columns plus ``prediction`` and, for models with ``predict_proba``, the
``probability`` of class 1. A ``target`` column in the input is kept in the
output but never used as a feature. Relative paths resolve against the working
directory, which the scheduler sets to the project root.

Output files are written under a hidden temporary name in the same folder and
renamed into place, so a watcher of ``output_dir`` never sees half a file.

The model is looked up when the scoring step runs, not while the pipeline body
is compiled: the scheduler traces pipeline bodies to validate its config at
start and reload, which must neither touch the ZenML store nor fail merely
because no model has been trained yet. Without a model the run fails in
``score_batch`` with "no trained model found".

Caching is off, and a job running this pipeline should not turn it on: the same
input path may hold new data at every run, and a cached step writes nothing.
"""

import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import pandas as pd
from sklearn.base import ClassifierMixin
from zenml import pipeline, step
from zenml.client import Client

from pipelines.training import MODEL_ARTIFACT, TARGET_COLUMN, _read_table

PREDICTION_COLUMN = "prediction"
PROBABILITY_COLUMN = "probability"


def _resolve(location: str) -> Path:
    path = Path(location.removeprefix("file://")).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def choose_inputs(input_path: str | None, input_paths: list[str] | None) -> list[str]:
    """The files to score, from exactly one of the two pipeline parameters.

    Raises:
        ValueError: When both or neither are given, or the list is empty.
    """
    if input_path is not None and input_paths is not None:
        raise ValueError(
            "batch_inference_pipeline takes exactly one of input_path (one file) or input_paths "
            f"(a list of files), got both: input_path={input_path!r}, input_paths={input_paths!r}"
        )
    if input_path is not None:
        if not input_path.strip():
            raise ValueError("batch_inference_pipeline: input_path is empty; name the file to score")
        return [input_path]
    if input_paths is None:
        raise ValueError(
            "batch_inference_pipeline needs exactly one of input_path (one file) or input_paths "
            "(a list of files), got neither"
        )
    if not input_paths or not all(p.strip() for p in input_paths):
        raise ValueError(f"batch_inference_pipeline: input_paths must list file paths, got {input_paths!r}")
    return list(input_paths)


def load_latest_model() -> ClassifierMixin:
    """The latest version of the ``model`` artifact, loaded.

    Inside a step, ``Client().get_artifact_version`` also records the version
    as an input the step loaded, so the run shows which model scored the data.

    Raises:
        RuntimeError: When no model has been trained yet.
    """
    try:
        version = Client().get_artifact_version(MODEL_ARTIFACT)
    except KeyError:
        raise RuntimeError(
            f"no trained model found: artifact {MODEL_ARTIFACT!r} does not exist yet; run the training "
            "pipeline first (e.g. zenml-scheduler trigger nightly-retrain)"
        ) from None
    print(
        f"Using {MODEL_ARTIFACT!r} version {version.version} ({version.id}) from run {version.producer_pipeline_run_id}"
    )
    return version.load()


def feature_columns(model: ClassifierMixin, frame: pd.DataFrame) -> list[str]:
    """The columns the model was fitted on (all but the target when it does not say)."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(name) for name in names]
    return [str(c) for c in frame.columns if c != TARGET_COLUMN]


def existing_inputs(inputs: list[str]) -> list[Path]:
    """The absolute path of each input file.

    Raises:
        FileNotFoundError: Naming every input that does not exist.
    """
    paths = [_resolve(location) for location in inputs]
    missing = [
        f"{path} (input {location!r})" for location, path in zip(inputs, paths, strict=True) if not path.is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"input file(s) not found: {'; '.join(missing)}; relative paths resolve against {Path.cwd()}"
        )
    return paths


def predict_frame(model: ClassifierMixin, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``frame`` plus the prediction columns.

    Raises:
        ValueError: When ``frame`` lacks a feature column the model needs.
    """
    features = feature_columns(model, frame)
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ValueError(
            f"{source} lacks the feature column(s) {', '.join(missing)} that the model was trained on; "
            f"its columns: {', '.join(map(str, frame.columns)) or '(none)'}"
        )
    classes = list(getattr(model, "classes_", []))
    with_probability = hasattr(model, "predict_proba") and 1 in classes
    scored = frame.copy()
    if frame.empty:  # sklearn rejects zero rows; keep the header consistent
        scored[PREDICTION_COLUMN] = pd.Series(dtype="int64")
        if with_probability:
            scored[PROBABILITY_COLUMN] = pd.Series(dtype="float64")
        return scored
    X = frame[features]
    scored[PREDICTION_COLUMN] = model.predict(X)
    if with_probability:
        scored[PROBABILITY_COLUMN] = model.predict_proba(X)[:, classes.index(1)]
    return scored


def write_csv_atomically(frame: pd.DataFrame, target: Path) -> None:
    """Write ``frame`` to ``target`` so that readers see either nothing or the whole file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and *.tmp: a watcher's default ignore patterns skip it.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            frame.to_csv(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def input_stem(location: str) -> str:
    """The file name without its suffix (both of them for ``.csv.gz``)."""
    path = Path(location)
    return Path(path.stem).stem if path.suffix.lower() == ".gz" else path.stem


def output_targets(inputs: list[str], output_dir: str) -> list[Path]:
    """``<output_dir>/<stem>.csv`` for each input.

    Raises:
        ValueError: When two inputs would write the same output file.
    """
    folder = _resolve(output_dir)
    targets = [folder / f"{input_stem(location)}.csv" for location in inputs]
    clashes = sorted(str(t) for t, n in Counter(targets).items() if n > 1)
    if clashes:
        raise ValueError(f"several inputs share a file name stem and would overwrite {', '.join(clashes)}")
    return targets


@step(enable_cache=False)
def score_batch(inputs: list[str], output_dir: str) -> Annotated[int, "rows_scored"]:
    """Score each input with the latest model; return the number of rows scored."""
    # Fail before writing anything when a file of the batch is missing.
    paths = existing_inputs(inputs)
    targets = output_targets(inputs, output_dir)
    model = load_latest_model()
    total = 0
    for location, path, target in zip(inputs, paths, targets, strict=True):
        scored = predict_frame(model, _read_table(str(path)), location)
        write_csv_atomically(scored, target)
        print(f"Scored {len(scored)} rows of {location} -> {target}")
        total += len(scored)
    return total


@pipeline(enable_cache=False)
def batch_inference_pipeline(
    input_path: str | None = None,
    input_paths: list[str] | None = None,
    output_dir: str = "data/predictions",
) -> int:
    """Score ``input_path`` or each of ``input_paths``; predictions go to ``output_dir``."""
    return score_batch(inputs=choose_inputs(input_path, input_paths), output_dir=output_dir)


if __name__ == "__main__":
    batch_inference_pipeline(input_path="data/samples/new_batch.csv")
