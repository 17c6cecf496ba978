"""Training pipeline: load a table, split it, fit a classifier, report accuracy.

The shape follows ZenML's "trigger pipelines from external systems" tutorial
(``training_pipeline(data_url, model_type)``), with real data loading: a CSV
or Parquet file from a local path or a URL. Relative paths resolve against the
working directory, which the scheduler sets to the project root.

The fitted model is stored as the artifact named ``model`` (MODEL_ARTIFACT), so
a later pipeline can load the latest version by that name.
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from zenml import pipeline, step

TARGET_COLUMN = "target"
MODEL_ARTIFACT = "model"
SYNTHETIC_DATA_URL = "synthetic"
MODEL_TYPES = ("random_forest", "gradient_boosting")

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")


def _synthetic_frame(rows: int = 600, seed: int = 42) -> pd.DataFrame:
    """A small table whose target depends on the features."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0.0, 1.0, size=(rows, 3))
    logits = features @ np.array([1.5, -1.0, 0.5])
    target = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logits))).astype(int)
    frame = pd.DataFrame(features, columns=["feature_1", "feature_2", "feature_3"])
    frame[TARGET_COLUMN] = target
    return frame


def _read_table(location: str) -> pd.DataFrame:
    name = location.lower().split("?", 1)[0]
    if name.endswith(_PARQUET_SUFFIXES):
        return pd.read_parquet(location)
    if name.endswith(_CSV_SUFFIXES):
        return pd.read_csv(location)
    raise ValueError(
        f"cannot tell the format of {location!r}: expected a name ending in "
        f"{', '.join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)}"
    )


def read_dataset(data_url: str) -> pd.DataFrame:
    """Read the table behind ``data_url`` (or generate one for "synthetic").

    Raises:
        FileNotFoundError: For a local path that does not exist.
        ValueError: For an unknown format, an empty table or no target column.
    """
    if data_url == SYNTHETIC_DATA_URL:
        return _synthetic_frame()
    if "://" in data_url and not data_url.startswith("file://"):
        frame = _read_table(data_url)
    else:
        path = Path(data_url.removeprefix("file://"))
        resolved = path if path.is_absolute() else Path.cwd() / path
        if not resolved.is_file():
            raise FileNotFoundError(
                f"data file not found: {resolved} (data_url={data_url!r}; relative "
                f"paths resolve against {Path.cwd()}); use {SYNTHETIC_DATA_URL!r} "
                "for generated data"
            )
        frame = _read_table(str(resolved))
    if frame.empty:
        raise ValueError(f"{data_url!r} holds no rows")
    if TARGET_COLUMN not in frame.columns:
        raise ValueError(f"{data_url!r} has no {TARGET_COLUMN!r} column; columns: {', '.join(map(str, frame.columns))}")
    return frame


def build_model(model_type: str) -> ClassifierMixin:
    """A fresh, seeded classifier of the requested kind.

    Raises:
        ValueError: For a model type other than MODEL_TYPES.
    """
    if model_type == "random_forest":
        return RandomForestClassifier(n_estimators=100, random_state=42)
    if model_type == "gradient_boosting":
        return GradientBoostingClassifier(random_state=42)
    raise ValueError(f"unknown model_type {model_type!r}; allowed: {', '.join(MODEL_TYPES)}")


@step
def load_data(data_url: str) -> pd.DataFrame:
    """Load the training table from a path, a URL, or "synthetic"."""
    frame = read_dataset(data_url)
    print(f"Loaded {len(frame)} rows from {data_url}")
    return frame


@step
def preprocess(
    df: pd.DataFrame,
    test_size: float = 0.2,
    random_state: int = 42,
) -> tuple[
    Annotated[pd.DataFrame, "X_train"],
    Annotated[pd.DataFrame, "X_test"],
    Annotated[pd.Series, "y_train"],
    Annotated[pd.Series, "y_test"],
]:
    """Split features from the target and hold out a test set."""
    features = df.drop(columns=[TARGET_COLUMN])
    target = df[TARGET_COLUMN]
    X_train, X_test, y_train, y_test = train_test_split(
        features, target, test_size=test_size, random_state=random_state
    )
    return X_train, X_test, y_train, y_test


@step
def train_model(
    X_train: pd.DataFrame,
    y_train: pd.Series,
    model_type: str = "random_forest",
) -> Annotated[ClassifierMixin, MODEL_ARTIFACT]:
    """Fit a ``random_forest`` or ``gradient_boosting`` classifier."""
    model = build_model(model_type)
    print(f"Training a {model_type} model on {len(X_train)} rows")
    model.fit(X_train, y_train)
    return model


@step
def evaluate(
    model: ClassifierMixin,
    X_test: pd.DataFrame,
    y_test: pd.Series,
) -> Annotated[float, "accuracy"]:
    """Accuracy of the model on the held-out rows."""
    accuracy = float(accuracy_score(y_test, model.predict(X_test)))
    print(f"Model accuracy: {accuracy:.4f}")
    return accuracy


@pipeline
def training_pipeline(
    data_url: str = "data/train.csv",
    model_type: str = "random_forest",
) -> None:
    """Train and evaluate a classifier; ``preprocess`` stays open to step parameters."""
    df = load_data(data_url=data_url)
    X_train, X_test, y_train, y_test = preprocess(df=df)
    model = train_model(X_train=X_train, y_train=y_train, model_type=model_type)
    evaluate(model=model, X_test=X_test, y_test=y_test)


if __name__ == "__main__":
    training_pipeline()
