"""Predict a property for every row of a table with a trained model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint import BUNDLED_MODELS, load_model
from .datasets import cells_as_written, check_source, input_name, run_folder
from .elements import unseen_elements
from .errors import InputError, plural
from .featurize import Featurized, check_outputs, load_and_prepare, rejected_path, target_reasons, write_rejected
from .io import write_table
from .training import resolve_device


@dataclass(frozen=True)
class Predictor:
    """A loaded model: ``predict`` maps an (n, 86) fraction matrix to target units."""

    predict: Callable[[np.ndarray], np.ndarray]
    target: str
    unit: str
    path: str
    with_spread: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    """An ensemble's predictions and the standard deviation of its members' predictions per row, in one pass
    (None: one network or a regressor)."""
    members: int = 1
    seen: dict[str, int] | None = None
    """Training rows containing each element, from the card (None when the card does not record them)."""
    column: str | None = None
    """The training data's target column as it was named (None: unknown or ``target``)."""

    @property
    def target_names(self) -> tuple[str, ...]:
        """Names a table's column may have to be taken as this model's target by ``predict``."""
        return tuple(n for n in (self.target, self.column) if n and n != "target")

    def describes(self) -> str:
        """``formation energy (eV/atom)``: what the model predicts."""
        return f"{self.target} ({self.unit})" if self.unit else self.target


def load_predictor(model_source: str | Path, device: str = "auto", option: str = "--model") -> Predictor:
    """A run directory (pretrain, finetune, extract-features), ``bundled`` or ``bundled:NAME``, loaded once.
    ``option`` names the command-line option in error messages."""
    from . import feature_runs

    model_source = run_folder(model_source)
    text = str(model_source)
    if text.startswith("bundled:") and text.partition(":")[2] not in ("", *BUNDLED_MODELS):
        raise InputError(f"{option} {text}: no bundled model {text.partition(':')[2]!r}; bundled: "
                         f"{', '.join(BUNDLED_MODELS)}")
    if feature_runs.is_feature_run(model_source):
        fm = feature_runs.load_feature_model(model_source, str(resolve_device(device)))
        target = fm.card.get("target") or {}
        return Predictor(lambda x: fm.predict(np.asarray(x, dtype=np.float64)), str(target.get("name") or "target"),
                         str(target.get("unit") or ""), str(fm.path), seen=_seen_elements(fm.card),
                         column=_target_column(fm.card))
    loaded = load_model(model_source, resolve_device(device))
    dev = next(loaded.model.parameters()).device

    def run(x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32)).to(dev)
        return loaded.predict(xt).cpu().numpy().astype(np.float64)

    def with_spread(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32)).to(dev)
        pred, spread = loaded.predict_with_spread(xt)
        return pred.cpu().numpy().astype(np.float64), spread.cpu().numpy().astype(np.float64)

    members = loaded.info.members
    return Predictor(run, loaded.info.target or "target", loaded.info.unit, str(loaded.path),
                     with_spread=with_spread if members > 1 else None, members=members,
                     seen=_seen_elements(loaded.card), column=_target_column(loaded.card))


def _seen_elements(card: dict) -> dict[str, int] | None:
    """The card's count of training rows per element (runs made before it was recorded: None)."""
    seen = ((card.get("data") or {}).get("train") or {}).get("element_rows")
    return seen if isinstance(seen, dict) else None


def _target_column(card: dict) -> str | None:
    """The training data's target column name from the card (None when not recorded)."""
    column = ((card.get("data") or {}).get("train") or {}).get("target_column")
    return str(column) if column else None


def predict_fractions(model_source: str | Path, fractions: np.ndarray, device: str = "auto") -> np.ndarray:
    """Predictions (target units) of a run directory / bundled model for an (n, 86) fraction matrix."""
    from .features import check_fractions

    return load_predictor(model_source, device).predict(check_fractions(fractions))


PREDICTION_COLUMNS = ("prediction", "ensemble_std", "unseen_elements")
"""Columns ``predict`` may add to every input (an input's own column of that name is renamed "(input)")."""
SCORED_COLUMNS = ("error", "target (as written)")
"""Columns ``predict`` may add to an input with a target."""


@dataclass
class Prediction:
    """What :func:`predict` returns: the table, the parsed input and the model's description."""

    table: pd.DataFrame
    featurized: Featurized
    predictor: Predictor
    unscored: pd.DataFrame
    """Rows with a target cell that is not a usable number (``line, formula, reason``): no error for them."""


def predict(
    data: str | Path,
    model: str | Path = "bundled",
    output: str | Path | None = None,
    *,
    formula_col: str | None = None,
    target_col: str | None = None,
    device: str = "auto",
) -> Prediction:
    """One prediction per input row, in input order (rejected rows get an empty prediction).

    Columns: ``line, formula``, the input's other columns, ``prediction``, ``ensemble_std`` for an ensemble
    (the spread of its members' predictions: larger means less certain, not a calibrated error bar),
    ``unseen_elements`` when the card records the training data's elements (those of the row absent
    from this model's training data: for a fine-tune, its own data, not the source's), plus
    ``target, error`` when the input has a target.
    With ``output`` the table is written there and rejected rows to ``<stem>.rejected.csv``.
    """
    model = run_folder(model)  # a finetune/pretrain/extract_features result: its directory
    check_source(model, "model", "a run directory, 'bundled' or 'bundled:NAME'")
    if output is not None:
        check_outputs(output, data, merged=False)  # predict keeps every row: it lists no merged rows
    predictor = load_predictor(model, device)
    featurized = load_and_prepare(data, formula_col, target_col, "keep", require_target=False,
                                  target_names=predictor.target_names, target_unit=predictor.unit)
    if predictor.with_spread is not None:
        pred, spread = predictor.with_spread(featurized.fractions)
    else:
        pred, spread = predictor.predict(featurized.fractions), None
    table = featurized.table.frame
    out = pd.DataFrame({"line": table["line"], "formula": table["formula"]})
    # an input's prediction, ensemble_std or unseen_elements is renamed whether this model writes one or not:
    # beside this prediction it would read as this model's
    added = {*PREDICTION_COLUMNS, *(SCORED_COLUMNS if featurized.table.has_target else ())}
    others = [c for c in table.columns if c not in ("line", "formula", "target")]
    written = cells_as_written(featurized.table, others)  # ids as in the file: 007 stays 007
    taken = {*table.columns, *added}
    riding = {}
    for col in others:  # the input's other columns (ids, ...) ride along, so results join back
        name = input_name(col, taken) if col in added else col  # renamed where predict adds that name
        taken.add(name)
        riding[name] = written[col].to_numpy() if col in written else table[col].to_numpy()
    out = pd.concat([out, pd.DataFrame(riding, index=out.index)], axis=1)  # at once: wide inputs stay fast
    out["prediction"] = np.nan
    position = pd.Series(np.arange(len(table)), index=table["line"].to_numpy())
    rows = position[featurized.frame["line"].to_numpy()].to_numpy()
    out.loc[rows, "prediction"] = pred
    if spread is not None:
        out["ensemble_std"] = np.nan
        out.loc[rows, "ensemble_std"] = spread
    if predictor.seen is not None:
        out["unseen_elements"] = pd.Series([None] * len(out), dtype=object)
        out.loc[rows, "unseen_elements"] = unseen_elements(featurized.fractions, predictor.seen)
    unscored = pd.DataFrame(columns=["line", "formula", "reason"])
    if featurized.table.has_target:
        target = table["target"].to_numpy(dtype=float)
        out["target"] = target
        written = _target_as_written(featurized.table)
        if written is not None:  # cells that are not numbers, as the file wrote them (the target stays numeric)
            out["target (as written)"] = written
        reasons = np.array(target_reasons(featurized.table), dtype=object)
        out["error"] = (out["prediction"] - target).where([r is None for r in reasons])
        bad = np.array([r not in (None, "missing target") for r in reasons], dtype=bool)  # a blank: no target
        bad &= out["prediction"].notna().to_numpy()
        unscored = pd.DataFrame({"line": table["line"].to_numpy()[bad], "formula": table["formula"].to_numpy()[bad],
                                 "reason": reasons[bad]})
    if output is not None:
        write_table(out, output)
        write_rejected(featurized, rejected_path(output))
    return Prediction(out, featurized, predictor, unscored)


def _target_as_written(table) -> pd.Series | None:
    """The target cells as text where one is not a number (``<0.1``, ``n/a``); None when every filled cell is."""
    values = table.frame["target"]
    if table.raw_target is None:
        return None
    raw = pd.Series(table.raw_target.to_numpy(), index=values.index)
    keep = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    return raw.where(keep).astype(object).where(keep, None) if keep.any() else None


def reliability_notes(result: Prediction) -> list[str]:
    """Summary lines on the reliability columns of a prediction table (none when it has neither)."""
    notes = []  # from the predictor: an input column may carry either name when predict does not add it
    if result.predictor.with_spread is not None:
        notes.append(f"ensemble_std: the spread of the {result.predictor.members} networks' predictions per row, "
                     f"a relative confidence (larger: less certain), not an error bar")
    if result.predictor.seen is not None:
        flagged = result.table["unseen_elements"].fillna("").astype(str) != ""
        if flagged.any():
            first, n = result.table[flagged].iloc[0], int(flagged.sum())
            where = f"column unseen_elements; first: line {first['line']}, {first['unseen_elements']}"
            notes.append(f"{plural(n, 'row')} {'contains' if n == 1 else 'contain'} elements absent from this "
                         f"model's training data ({where}): extrapolations, less reliable")
    return notes
