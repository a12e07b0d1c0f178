"""Shared test setup: one CPU thread (small runs are slower with more), repo paths, tiny tables."""

from __future__ import annotations

import os

# Tiny networks run fastest on one thread, and a second thread only fights other work on a small
# machine. Set before torch is imported here or in a subprocess (the env is inherited).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
MESSY = DATA / "messy_formation_energy.csv"
BAND_GAPS = DATA / "example_band_gaps.csv"
SHARED_DATA = REPO.parent / "shared" / "data"

TRAIN_ELEMENTS = "H Li Be B C N O F Na Mg Al Si P S Cl K Ca Ti Fe Ni Cu Zn".split()


def binary_table(n: int, seed: int = 0, target: str = "target") -> pd.DataFrame:
    """``n`` rows of random binary formulas (A{x}B{y}) with a smooth, learnable target."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(len(TRAIN_ELEMENTS), 2, replace=False)
        x, y = rng.integers(1, 6, 2)
        value = -0.1 * a + 0.05 * b + 0.01 * x - 0.02 * y + rng.normal(0, 0.05)
        rows.append((f"{TRAIN_ELEMENTS[a]}{x}{TRAIN_ELEMENTS[b]}{y}", float(value)))
    return pd.DataFrame(rows, columns=["formula", target])


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir() or not any(SHARED_DATA.iterdir()):
        pytest.skip(f"{SHARED_DATA} is absent (the shared data folder is only on the project machine)")
    return SHARED_DATA
