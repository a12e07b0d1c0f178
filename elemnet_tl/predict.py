"""Predict a property for every row of a table with a trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint import load_model
from .featurize import Featurized, load_and_prepare, rejected_path, write_rejected
from .io import check_output, write_table
from .training import resolve_device


def predict_fractions(model_source: str | Path, fractions: np.ndarray, device: str = "auto") -> np.ndarray:
    """Predictions (target units) of a run directory / bundled model for an (n, 86) fraction matrix."""
    from . import feature_runs

    if feature_runs.is_feature_run(model_source):
        return feature_runs.load_feature_model(model_source).predict(np.asarray(fractions, dtype=np.float64))
    loaded = load_model(model_source, resolve_device(device))
    x = torch.as_tensor(np.asarray(fractions, dtype=np.float32)).to(next(loaded.model.parameters()).device)
    return loaded.predict(x).cpu().numpy().astype(np.float64)


def predict(
    data: str | Path,
    model: str | Path = "bundled",
    output: str | Path | None = None,
    *,
    formula_col: str | None = None,
    target_col: str | None = None,
    device: str = "auto",
) -> tuple[pd.DataFrame, Featurized]:
    """One prediction per input row, in input order (rejected rows get an empty prediction).

    Columns: ``line, formula, prediction`` plus ``target, error`` when the input has a target.
    With ``output`` the table is written there and rejected rows to ``<stem>.rejected.csv``.
    """
    if output is not None:
        check_output(output, data)
    featurized = load_and_prepare(data, formula_col, target_col, "keep", require_target=False)
    pred = predict_fractions(model, featurized.fractions, device)
    table = featurized.table.frame
    out = pd.DataFrame({"line": table["line"], "formula": table["formula"]})
    out["prediction"] = np.nan
    position = pd.Series(np.arange(len(table)), index=table["line"].to_numpy())
    out.loc[position[featurized.frame["line"].to_numpy()].to_numpy(), "prediction"] = pred
    if featurized.table.has_target:
        out["target"] = table["target"]
        out["error"] = out["prediction"] - out["target"]
    if output is not None:
        write_table(out, output)
        write_rejected(featurized, rejected_path(output))
    return out, featurized
