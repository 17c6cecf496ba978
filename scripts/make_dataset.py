"""Generate the bundled example data, deterministically.

Usage:
    ``python scripts/make_dataset.py [OUTPUT] [--rows N] [--seed S] [--drifted]``
        one table (by default ``data/train.csv``, 600 rows);
    ``python scripts/make_dataset.py --all``
        every bundled file: ``data/train.csv``, ``data/samples/current.csv``
        and ``data/samples/drifted.csv``.

The target depends on the features through a noisy logistic model, so a
classifier does clearly better than chance but not perfectly. The monitoring
samples come from the same hidden model: ``current.csv`` draws its features
from the training distribution (new rows, another seed), while ``drifted.csv``
moves three of them (``--drifted``: feature_1 and feature_3 shift their mean,
feature_2 spreads out), which the drift pipeline must notice. Both keep the
target column, so the training pipeline can retrain on either.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = ("feature_1", "feature_2", "feature_3", "feature_4", "feature_5")
TARGET = "target"
DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_OUTPUT = DATA / "train.csv"
# Feature weights of the hidden model; feature_5 is pure noise on purpose.
WEIGHTS = np.array([1.6, -1.2, 0.8, 0.5, 0.0])
# The drifted sample's features: value * DRIFT_SCALE + DRIFT_SHIFT (in standard deviations of
# the training data). feature_4 and feature_5 stay put, so a report can tell which ones moved.
DRIFT_SHIFT = np.array([1.0, 0.0, -0.8, 0.0, 0.0])
DRIFT_SCALE = np.array([1.0, 1.8, 1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Dataset:
    """One bundled file and how it is made."""

    path: Path
    rows: int
    seed: int
    drifted: bool = False


BUNDLED = (
    Dataset(DEFAULT_OUTPUT, rows=600, seed=20240601),
    Dataset(DATA / "samples" / "current.csv", rows=300, seed=20240702),
    Dataset(DATA / "samples" / "drifted.csv", rows=300, seed=20240803, drifted=True),
)


def make_rows(rows: int, seed: int, *, drifted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features (rows x 5, rounded to 4 decimals) and a 0/1 target."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0.0, 1.0, size=(rows, len(FEATURES)))
    if drifted:
        features = features * DRIFT_SCALE + DRIFT_SHIFT
    # An interaction term keeps tree ensembles a little ahead of a linear fit.
    logits = features @ WEIGHTS + 0.7 * features[:, 0] * features[:, 2]
    probability = 1.0 / (1.0 + np.exp(-logits))
    target = (rng.random(rows) < probability).astype(int)
    return np.round(features, 4), target


def write_csv(path: Path, features: np.ndarray, target: np.ndarray) -> None:
    """Plain CSV with a header; no pandas needed to produce it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(",".join((*FEATURES, TARGET)) + "\n")
        for row, label in zip(features, target, strict=True):
            fh.write(",".join(f"{v:.4f}" for v in row) + f",{int(label)}\n")


def write_dataset(dataset: Dataset) -> None:
    """Generate ``dataset`` and write it to its path."""
    features, target = make_rows(dataset.rows, dataset.seed, drifted=dataset.drifted)
    write_csv(dataset.path, features, target)
    print(f"wrote {dataset.rows} rows to {dataset.path} (positives: {int(target.sum())})")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--drifted", action="store_true", help="shift the features as in drifted.csv")
    parser.add_argument("--all", action="store_true", help="regenerate every bundled file (ignores the rest)")
    args = parser.parse_args(argv)
    datasets = BUNDLED if args.all else (Dataset(args.output, args.rows, args.seed, args.drifted),)
    for dataset in datasets:
        write_dataset(dataset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
