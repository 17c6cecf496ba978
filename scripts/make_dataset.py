"""Generate ``data/train.csv`` for the training pipeline, deterministically.

Usage: ``python scripts/make_dataset.py [OUTPUT] [--rows N] [--seed S]``.

The target depends on the features through a noisy logistic model, so a
classifier does clearly better than chance but not perfectly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FEATURES = ("feature_1", "feature_2", "feature_3", "feature_4", "feature_5")
TARGET = "target"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "data" / "train.csv"
# Feature weights of the hidden model; feature_5 is pure noise on purpose.
WEIGHTS = np.array([1.6, -1.2, 0.8, 0.5, 0.0])


def make_rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (rows x 5, rounded to 4 decimals) and a 0/1 target."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0.0, 1.0, size=(rows, len(FEATURES)))
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


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    features, target = make_rows(args.rows, args.seed)
    write_csv(args.output, features, target)
    print(f"wrote {args.rows} rows to {args.output} (positives: {int(target.sum())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
