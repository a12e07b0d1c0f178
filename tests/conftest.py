"""Shared test setup: one CPU thread (small runs are slower with more), repo paths, tiny tables, a tiny
pretrained source run, tiny training tensors and a CLI error checker."""

from __future__ import annotations

import os

# Tiny networks run fastest on one thread, and a second thread only fights other work on a small
# machine. Set before torch is imported here or in a subprocess (the env is inherited).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
MESSY = DATA / "messy_formation_energy.csv"
BAND_GAPS = DATA / "example_band_gaps.csv"
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_ARCH = "32x2-16x1"
"""Layers fc1, fc2 (group g1), fc3 (group g2) and out (group head): the tiny network of the tests."""

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


def tiny_data(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val): 80/20 split of random binary compounds, standardized target."""
    import torch

    from elemnet_tl.compositions import parse_formulas

    frame = binary_table(n, seed)
    x = torch.as_tensor(parse_formulas(frame["formula"]).fractions, dtype=torch.float32)
    y = frame["target"].to_numpy()
    y = torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32)
    cut = int(0.8 * n)
    return x[:cut], y[:cut], x[cut:], y[cut:]


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    """A tiny pretrained run directory (:data:`TINY_ARCH`, 3 epochs on random binary compounds)."""
    from elemnet_tl.pretrain import pretrain
    from elemnet_tl.training import FitConfig

    folder = tmp_path_factory.mktemp("source")
    binary_table(400, seed=1).to_csv(folder / "source.csv", index=False)
    run = folder / "run"
    pretrain(folder / "source.csv", run, arch=TINY_ARCH, config=FitConfig(epochs=3, batch_size=32),
             show_progress=False)
    return run


def one_line_error(args: list[str], *must_name: object) -> str:
    """Run the CLI, expect exit 2 and a single 'error: ...' line containing every ``must_name``."""
    from typer.testing import CliRunner

    from elemnet_tl.cli import app

    result = CliRunner().invoke(app, args)
    output = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, output)
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("error: "), output
    for text in must_name:
        assert str(text) in output, (text, output)
    return output
