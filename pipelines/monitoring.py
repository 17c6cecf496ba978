"""Drift monitoring pipeline: compare newly landed data with the training data.

``drift_pipeline(reference_url, current_url, threshold)`` reads both tables
and, for each numeric feature of the reference (every numeric column but
``target``), measures how far the current sample has moved:

* the population stability index (PSI) over quantile bins of the reference,
  ``sum((cur - ref) * ln(cur / ref))`` over the bins' shares, with an empty
  bin counted as ``EPSILON`` so the logarithm stays finite;
* the two-sample Kolmogorov-Smirnov statistic (the largest gap between the
  two empirical distribution functions, 0 to 1).

``drift_score`` is the largest PSI. A run whose ``drift_score`` exceeds
``threshold`` has ``drifted``; the features above the threshold are its
``drifted_features``. The report is the ``drift_report`` artifact and is also
logged as metadata of the pipeline run itself (not of a step), so anything
reading the run, such as an ``after:`` trigger's condition, finds
``drift_score`` and ``drifted`` among the run's metadata.

Values that are not finite numbers (empty cells, NaN, infinities, text in a
numeric column) are "missing": PSI gives them a bin of their own, so a change
in how often a feature is missing counts as drift; KS compares the finite
values only. A constant feature drifts when its value moves either way (see
``cut_points``). Relative paths resolve against the working directory, which
the scheduler sets to the project root.

Caching is off, and a job running this pipeline should not turn it on: the
file behind ``current_url`` may change between runs, and a cached step would
log no metadata to the new run.
"""

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from zenml import get_step_context, log_metadata, pipeline, step

from pipelines.training import TARGET_COLUMN, _read_table

BINS = 10
# Share given to a bin one sample leaves empty, so that ln(cur / ref) stays finite. A bin only
# one sample fills adds about its share times ln(share / EPSILON): up to 9.2 for the whole sample.
EPSILON = 1e-4


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def cut_points(reference: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Right edges of the bins ``(-inf, c0], (c0, c1], ..., (ck, inf)`` for the finite ``reference``.

    The cut points are the reference's inner quantiles, ties merged. When the lowest bin
    holds nothing but the reference's minimum (a constant column, or a floor such as 0
    for a tenth of the rows or more), values below that minimum get a bin of their own:
    otherwise a feature that moves down from a point mass would stay in its bin unseen.
    The top needs no such bin: a point mass there sits at the top cut point, so the open
    bin above it is empty in the reference and a move upwards lands in it.
    """
    if len(reference) == 0:
        return np.array([])
    cuts = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    lowest = reference.min()
    if len(cuts) == 0 or cuts[0] == lowest:
        cuts = np.concatenate([[np.nextafter(lowest, -np.inf)], cuts])
    return cuts


def bin_shares(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin of ``cuts``, then the share missing (not finite)."""
    finite = np.isfinite(values)
    counts = np.bincount(np.searchsorted(cuts, values[finite], side="left"), minlength=len(cuts) + 1)
    return np.append(counts, np.count_nonzero(~finite)) / len(values)


def population_stability_index(
    reference: np.ndarray, current: np.ndarray, bins: int = BINS, epsilon: float = EPSILON
) -> float:
    """PSI of ``current`` against ``reference`` over ``bins`` quantile bins of the reference.

    0 for samples that fill the bins alike; about 0.1 is a small shift and above 0.2 a
    large one. Missing values have a bin of their own (see ``cut_points`` for the rest).

    Raises:
        ValueError: When either sample is empty.
    """
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    if len(reference) == 0 or len(current) == 0:
        raise ValueError("PSI needs at least one value in each sample")
    cuts = cut_points(_finite(reference), bins)
    ref = np.maximum(bin_shares(reference, cuts), epsilon)
    cur = np.maximum(bin_shares(current, cuts), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of the finite values, 0 (alike) to 1 (disjoint).

    When one sample has no finite values and the other has some, the samples share
    nothing (1.0); when neither has any, nothing differs (0.0).
    """
    reference = _finite(np.asarray(reference, dtype=float))
    current = _finite(np.asarray(current, dtype=float))
    if len(reference) == 0 or len(current) == 0:
        return 0.0 if len(reference) == len(current) else 1.0
    # The statistic is the same for every method; "asymp" skips the exact p-value's cost.
    return float(ks_2samp(reference, current, method="asymp").statistic)


def numeric_features(reference: pd.DataFrame) -> list[str]:
    """The reference's numeric columns except the target: the features drift is measured on."""
    return [
        str(name)
        for name in reference.columns
        if name != TARGET_COLUMN and pd.api.types.is_numeric_dtype(reference[name])
    ]


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    threshold: float,
    reference_url: str = "",
    current_url: str = "",
) -> dict[str, Any]:
    """PSI and KS per feature, the drift score (largest PSI) and the verdict against ``threshold``.

    Raises:
        ValueError: When the reference has no numeric feature, the current sample has no rows
            or lacks a feature of the reference.
    """
    features = numeric_features(reference)
    if not features:
        raise ValueError(
            f"the reference {reference_url!r} has no numeric feature column to compare; "
            f"its columns: {', '.join(map(str, reference.columns)) or '(none)'}"
        )
    if current.empty:
        raise ValueError(f"the current sample {current_url!r} holds no rows")
    missing = [name for name in features if name not in current.columns]
    if missing:
        raise ValueError(
            f"the current sample {current_url!r} lacks the feature column(s) {', '.join(missing)} "
            f"of the reference; its columns: {', '.join(map(str, current.columns)) or '(none)'}"
        )
    psi: dict[str, float] = {}
    ks: dict[str, float] = {}
    for name in features:
        ref = reference[name].to_numpy(dtype=float)
        # Text in a column that should be numeric becomes missing, which PSI counts as drift.
        cur = pd.to_numeric(current[name], errors="coerce").to_numpy(dtype=float)
        psi[name] = population_stability_index(ref, cur)
        ks[name] = ks_statistic(ref, cur)
    drift_score = max(psi.values())
    return {
        "drift_score": drift_score,
        "drifted": drift_score > threshold,
        "drifted_features": [name for name in features if psi[name] > threshold],
        "psi": psi,
        "ks": ks,
        "threshold": threshold,
        "rows_reference": len(reference),
        "rows_current": len(current),
        "reference_url": reference_url,
        "current_url": current_url,
    }


def check_threshold(threshold: float) -> float:
    """``threshold`` itself, when it can separate drift from noise (a positive PSI).

    Raises:
        ValueError: For zero, a negative number, NaN or infinity.
    """
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"drift_pipeline: threshold must be a positive number (PSI), got {threshold!r}")
    return threshold


def read_table(location: str) -> pd.DataFrame:
    """The CSV or Parquet table at a local path (relative to the working directory) or URL.

    Raises:
        FileNotFoundError: For a local path that does not exist.
    """
    if "://" in location and not location.startswith("file://"):
        return _read_table(location)
    path = Path(location.removeprefix("file://")).expanduser()
    resolved = path if path.is_absolute() else Path.cwd() / path
    if not resolved.is_file():
        raise FileNotFoundError(
            f"data file not found: {resolved} ({location!r}; relative paths resolve against {Path.cwd()})"
        )
    return _read_table(str(resolved))


@step(enable_cache=False)
def load_reference(reference_url: str) -> Annotated[pd.DataFrame, "reference"]:
    """The table the model was trained on."""
    return read_table(reference_url)


@step(enable_cache=False)
def load_current(current_url: str) -> Annotated[pd.DataFrame, "current"]:
    """The newly landed table to check."""
    return read_table(current_url)


@step(enable_cache=False)
def measure_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    threshold: float,
    reference_url: str,
    current_url: str,
) -> Annotated[dict[str, Any], "drift_report"]:
    """Compute the drift report, log it as metadata of the pipeline run and return it."""
    report = drift_report(reference, current, threshold, reference_url, current_url)
    # A bare log_metadata() inside a step attaches to the step run; naming the run attaches to
    # the pipeline run, where readers of the run find the keys without a "<step>::" prefix.
    log_metadata(metadata=report, run_id_name_or_prefix=get_step_context().pipeline_run.id)
    drifted = ", ".join(report["drifted_features"]) or "none"
    print(f"drift_score {report['drift_score']:.4f} (threshold {threshold}); drifted features: {drifted}")
    return report


@pipeline(enable_cache=False)
def drift_pipeline(
    reference_url: str = "data/train.csv",
    current_url: str = "data/samples/current.csv",
    threshold: float = 0.2,
) -> dict[str, Any]:
    """Measure the drift of ``current_url`` from ``reference_url``; drifted when PSI > ``threshold``."""
    # Checked while the body is compiled, so a bad value fails before any run exists.
    threshold = check_threshold(threshold)
    reference = load_reference(reference_url=reference_url)
    current = load_current(current_url=current_url)
    return measure_drift(
        reference=reference,
        current=current,
        threshold=threshold,
        reference_url=reference_url,
        current_url=current_url,
    )


if __name__ == "__main__":
    drift_pipeline(current_url="data/samples/drifted.csv")
