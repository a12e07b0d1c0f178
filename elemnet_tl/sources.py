"""``--from auto``: choose the pretrained source model (bundled formation energy, band gap, ...) from the data.

Each bundled model's activations are probed with a ridge regression, cross-validated on the training rows
(:class:`~elemnet_tl.features.PretrainedFeatures` with ``layers="auto"``: its best candidate layer). The
default model (formation energy, the first bundled one) is kept unless another one's probe is lower by
more than one standard error of the fold-by-fold difference (the one-standard-error rule: the default
is the one to keep when in doubt; the standard error is Nadeau and Bengio's, corrected for the overlap
of cross-validation training sets, which the plain one understates). The probe costs seconds (forward
passes and ridge fits), not a fine-tune per model. The choice, each model's probe MAE and the reason
go into ``card.json`` under ``source_choice``; docs/benchmarks.md has what it chose on the development
sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import BUNDLED_MODELS

if TYPE_CHECKING:
    from .features import PretrainedFeatures

AUTO = "auto"
PROBE_ROWS = 3000
"""At most this many training rows (a seeded subsample) probe the sources in ``finetune``."""
SWITCH_SE = 1.0
"""A model replaces the default only when its probe MAE is lower by more than this many (corrected)
standard errors of the paired fold-by-fold difference."""


def is_auto(source: str | Path) -> bool:
    return str(source).strip().lower() == AUTO


def bundled_sources() -> list[str]:
    """``--from`` values of every bundled model (``bundled:NAME``), the default first."""
    return [f"bundled:{name}" for name in BUNDLED_MODELS]


def probe_folds(transformer: PretrainedFeatures, x: np.ndarray, y: np.ndarray, folds: list) -> np.ndarray:
    """Per-fold CV MAE of a ridge probe on a fitted transformer's activations (its best layer's with
    ``layers="auto"``, else the given layers' at their best ridge penalty)."""
    from .regressors import ridge_cv

    if transformer.cv_table_:
        return transformer.layer_fold_maes_[transformer.layers_[0]]
    acts = transformer.activations(x, transformer.layers_)
    a = np.concatenate([acts[n] for n in transformer.layers_], axis=1)
    a = a[:, np.ptp(a, axis=0) > 0] if len(a) else a
    if a.shape[1] == 0:
        return np.full(len(folds), np.inf)
    maes = ridge_cv(a, y, folds)
    return maes[:, int(np.argmin(maes.mean(axis=0)))]


def paired_se(diff: np.ndarray, test_to_train: float) -> float:
    """Standard error of the mean of per-fold differences of two models scored on the same folds, with
    Nadeau and Bengio's correction for overlapping training sets (the corrected resampled t-test):
    sqrt((1/J + n_test/n_train) * var) for J folds; 0 with fewer than two folds."""
    if len(diff) < 2:
        return 0.0
    return float(np.sqrt((1.0 / len(diff) + test_to_train) * np.var(diff, ddof=1)))


def pick_source(per_fold: dict[str, np.ndarray], test_to_train: float = 0.25) -> tuple[str, dict]:
    """The source to start from, given each source's per-fold probe MAE (the first source is the default)
    and the folds' validation-to-training size ratio (0.25 for 5-fold CV); returns it and the card's
    ``source_choice`` (name, reason, each source's mean probe MAE)."""
    names = list(per_fold)
    default = names[0]
    means = {s: float(np.mean(v)) for s, v in per_fold.items()}
    best = min(names, key=means.__getitem__)
    ranked = ", ".join(f"{s} {v:.4g}" for s, v in sorted(means.items(), key=lambda kv: kv[1]))
    record = {"probe": means, "method": "ridge probe of each bundled model's activations, cross-validated on "
                                        "the training rows; the default kept unless another is lower by more "
                                        f"than {SWITCH_SE:g} standard error of the fold-by-fold difference"}
    if best == default:
        return default, {"name": default, "reason": f"lowest ridge-probe CV MAE: {ranked}", **record}
    diff = per_fold[best] - per_fold[default]
    se = paired_se(diff, test_to_train)
    gap = -float(np.mean(diff)) / se if se > 0 else float("inf")
    if gap > SWITCH_SE:
        reason = f"lowest ridge-probe CV MAE, {gap:.1f} standard errors below the default {default}: {ranked}"
        return best, {"name": best, "reason": reason, **record}
    reason = (f"the default: {best}'s ridge-probe CV MAE is lower by only {gap:.1f} standard error(s) of the "
              f"fold-by-fold difference (≤ {SWITCH_SE:g}): {ranked}")
    return default, {"name": default, "reason": reason, **record}


def probe_source(source: str | PretrainedFeatures, x: np.ndarray, y: np.ndarray, seed: int, device: str = "cpu",
                 layers: str | list[str] = "auto", max_rows: int | None = PROBE_ROWS,
                 **features) -> PretrainedFeatures | None:
    """``source``'s transformer fitted on ``x, y`` (at most ``max_rows`` of them, seeded): with
    ``layers="auto"`` its ``layers_`` is the layer a ridge probe finds most predictive and
    ``layer_fold_maes_`` the per-fold MAEs. None with fewer rows than cross-validation needs or a constant
    target (every layer predicts it exactly).
    ``source``: a ``--from`` value, or a transformer to fit as it is (its network already loaded);
    ``features``: more :class:`PretrainedFeatures` options (``with_pa``)."""
    from .features import PretrainedFeatures
    from .regressors import MIN_CV_ROWS
    from .training import is_constant

    if len(y) < MIN_CV_ROWS or is_constant(y):
        return None
    x, y = _probe_rows(x, y, seed, max_rows)
    if isinstance(source, PretrainedFeatures):
        return source.fit(x, y)
    return PretrainedFeatures(source=source, layers=layers, seed=seed, device=device, **features).fit(x, y)


def _probe_rows(x: np.ndarray, y: np.ndarray, seed: int, max_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    if max_rows is not None and len(y) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), max_rows, replace=False))
        return x[keep], y[keep]
    return x, y


def choose_source(x: np.ndarray, y: np.ndarray, seed: int, device: str = "cpu", layers: str | list[str] = "auto",
                  max_rows: int | None = PROBE_ROWS, transformers: list[PretrainedFeatures] | None = None,
                  **features) -> tuple[str, dict, dict[str, PretrainedFeatures]]:
    """Probe every bundled model on ``x, y`` (:func:`probe_source`) and pick one (:func:`pick_source`).
    ``transformers``: one per bundled model, in :func:`bundled_sources` order, to fit instead of new
    ones (their networks are not loaded twice). Returns the choice, its card record and each source's
    fitted transformer."""
    from .regressors import cv_folds

    sources = bundled_sources()
    if len(sources) == 1:
        return sources[0], {"name": sources[0], "reason": "the only bundled model", "probe": {}}, {}
    from .training import is_constant

    if is_constant(y):  # every probe predicts it exactly: nothing to choose by
        return sources[0], {"name": sources[0], "reason": "the default: the target is constant, nothing to probe",
                            "probe": {}}, {}
    x, y = _probe_rows(x, y, seed, max_rows)
    given = transformers if transformers is not None else sources
    fitted = {s: probe_source(g, x, y, seed, device, layers, None, **features) for s, g in zip(sources, given)}
    if any(t is None for t in fitted.values()):
        return sources[0], {"name": sources[0], "reason": f"the default: {len(y)} training rows are too few to "
                                                          "probe the bundled models", "probe": {}}, {}
    folds = cv_folds(len(y), seed)  # the folds the transformers chose their layers on (same rows and seed)
    ratio = float(np.mean([len(va) / len(tr) for tr, va in folds]))
    chosen, record = pick_source({s: probe_folds(t, x, y, folds) for s, t in fitted.items()}, ratio)
    record["rows"] = int(len(y))
    return chosen, record, fitted
