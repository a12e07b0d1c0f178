"""The scikit-learn side of feature runs: regressors, their cross-validation, and saving without pickle.

:func:`make_regressor` builds the estimators ``auto`` chooses among (:data:`REGRESSORS`);
:func:`cv_folds`, :func:`ridge_cv` and :func:`cv_regressor` pick hyper-parameters by cross-validated MAE
and return rows of the CV table (:func:`cv_row`, :func:`best_row`, :func:`choice_reason`).

Fitted regressors are saved without pickle: ``regressor.json`` (kind, hyper-parameters, scalars,
feature names) plus ``regressor.npz`` (arrays; loaded with ``allow_pickle=False``). Predictions of a
loaded regressor (:class:`ExportedRegressor`) are computed here in numpy (own tree traversal, kernel and
neighbour code) and reproduce the fitted scikit-learn model to ~1e-12.

Nothing here needs torch or the ElemNet network.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .attributes import near_range
from .datasets import sha256_of
from .errors import InputError
from .io import atomic_path, write_json

FORMAT = "elemnet_tl.features/2"
"""/2: trees fitted on the standardized target (``y_mean``/``y_scale``), which a /1 reader would ignore
(so it refuses /2); /1 directories still load."""
READABLE_FORMATS = ("elemnet_tl.features/1", FORMAT)
"""Format of ``regressor.json`` (and of the feature run's card)."""
REGRESSOR_JSON = "regressor.json"
REGRESSOR_NPZ = "regressor.npz"

REGRESSORS = ("rf", "gbr", "ridge", "svr", "knn")
"""Regressors ``auto`` chooses among (``none``: write features only)."""
N_FOLDS = 5
SMALL_DATA = 1000
"""Below this many training rows the 5-fold CV is repeated 3 times (different shuffles)."""
N_REPEATS_SMALL = 3
MIN_CV_ROWS = 10
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
KNN_NEIGHBORS = (5, 10, 20)
KNN_WEIGHTS = ("uniform", "distance")
SVR_C = (1.0, 10.0)
SVR_EPSILON = 0.1
"""On the standardized target."""
RF_TREES = 100
RF_MAX_FEATURES = ("sqrt",)
RF_MIN_LEAF = 2
GBR_STAGES = (100, 200, 300, 500)
GBR_DEPTH = (5,)
GBR_LEARNING_RATE = 0.1
GBR_SUBSAMPLE = 0.8
SVR_AUTO_MAX_ROWS = 10_000
"""``auto`` leaves svr out above this many training rows (its kernel grows as rows squared)."""
SVR_KERNEL_MAX_ROWS = 12_000
"""Up to this many rows, svr's CV uses one BLAS-computed kernel matrix per fold; above, libsvm's own."""

Folds = list[tuple[np.ndarray, np.ndarray]]
"""(training indices, validation indices) per fold."""


# --------------------------------------------------------------------------------------------- CV


def cv_folds(n: int, seed: int) -> Folds:
    """Shuffled 5-fold CV (repeated 3 times below :data:`SMALL_DATA` rows), seeded."""
    from sklearn.model_selection import KFold, RepeatedKFold

    if n < MIN_CV_ROWS:
        raise InputError(f"{n} training rows: cross-validation needs at least {MIN_CV_ROWS} "
                         "(give --layers and --regressor none to only extract features)")
    if n < SMALL_DATA:
        splitter = RepeatedKFold(n_splits=N_FOLDS, n_repeats=N_REPEATS_SMALL, random_state=seed)
    else:
        splitter = KFold(n_splits=N_FOLDS, shuffle=True, random_state=seed)
    return [(np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(np.zeros((n, 1)))]


def describe_cv(n: int) -> str:
    """The CV scheme :func:`cv_folds` uses for ``n`` rows, in words (for cards and progress lines)."""
    if n < SMALL_DATA:
        return f"{N_FOLDS}-fold cross-validation repeated {N_REPEATS_SMALL} times on the training data"
    return f"{N_FOLDS}-fold cross-validation on the training data"


def bounded_scaler() -> Any:
    """A fresh :class:`~elemnet_tl.scaling.BoundedScaler` (scikit-learn is imported only when one is needed)."""
    from .scaling import BoundedScaler

    return BoundedScaler()


def _standardize(x_tr: np.ndarray, x_va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both scaled with the training statistics by the scaler the final model uses (:func:`bounded_scaler`;
    ``StandardScaler``'s rule for constant columns, scale 1, included)."""
    scaler = bounded_scaler().fit(x_tr)
    return scaler.transform(x_tr), scaler.transform(x_va)


def ridge_cv(x: np.ndarray, y: np.ndarray, folds: Folds, alphas: Any = RIDGE_ALPHAS) -> np.ndarray:
    """(n_folds, n_alphas) validation MAE of ridge on standardized features, every alpha from one
    eigendecomposition per fold (primal when features <= rows, else dual)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    out = np.empty((len(folds), len(alphas)))
    for k, (tr, va) in enumerate(folds):
        xt, xv = _standardize(x[tr], x[va])
        y_mean = y[tr].mean()
        yc = y[tr] - y_mean
        if xt.shape[1] == 0:
            out[k] = np.abs(y[va] - y_mean).mean()
            continue
        if xt.shape[1] <= xt.shape[0]:
            s, v = np.linalg.eigh(xt.T @ xt)
            b = v.T @ (xt.T @ yc)
            pv = xv @ v
        else:
            s, v = np.linalg.eigh(xt @ xt.T)
            b = v.T @ yc
            pv = (xv @ xt.T) @ v
        s = np.clip(s, 0.0, None)
        pred = pv @ (b[:, None] / (s[:, None] + alphas[None, :])) + y_mean  # (n_val, n_alphas)
        out[k] = np.abs(pred - y[va][:, None]).mean(axis=0)
    return out


def cv_row(stage: str, candidate: str, params: dict, maes: np.ndarray, seconds: float, n_configs: int) -> dict:
    """One CV-table row: mean and std of the per-fold ``maes`` of the chosen ``params``."""
    return {"stage": stage, "candidate": candidate, "params": params, "cv_mae": float(np.mean(maes)),
            "cv_mae_std": float(np.std(maes)), "n_configs": int(n_configs), "seconds": round(seconds, 2)}


def mean_cv_mae(y: np.ndarray, folds: Folds) -> float:
    """The CV MAE of predicting each fold's training mean: the yardstick of "did the regressor learn"."""
    return float(np.mean([np.abs(y[va] - y[tr].mean()).mean() for tr, va in folds]))


def best_row(table: list[dict]) -> dict:
    """The first row with the lowest CV MAE."""
    return min(table, key=lambda r: r["cv_mae"])


def choice_reason(table: list[dict], chosen: dict, what: str) -> str:
    """Why ``chosen`` won, for the card: its CV MAE and the runner-up's."""
    others = [r for r in table if r is not chosen]
    text = f"lowest CV MAE {chosen['cv_mae']:.4g}"
    if what:
        text += f" ({what})"
    if others:
        runner = best_row(others)
        text += f"; next best {runner['candidate']} {runner['cv_mae']:.4g}"
    return text


# --------------------------------------------------------------------------------------------- regressors


def make_regressor(kind: str, params: dict, seed: int = 0) -> Any:
    """The scikit-learn estimator for ``kind`` with ``params`` (feature scaling included where needed)."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVR

    if kind == "ridge":
        return Pipeline([("scale", bounded_scaler()), ("model", Ridge(alpha=params["alpha"]))])
    if kind == "knn":
        return Pipeline([("scale", bounded_scaler()), ("model", KNeighborsRegressor(
            n_neighbors=params["n_neighbors"], weights=params["weights"], algorithm="brute"))])
    if kind == "svr":
        svr = SVR(kernel="rbf", C=params["C"], gamma=params["gamma"], epsilon=params["epsilon"], cache_size=500)
        return scaled_target(Pipeline([("scale", bounded_scaler()), ("model", svr)]))
    if kind == "rf":
        return scaled_target(RandomForestRegressor(
            n_estimators=params["n_estimators"], max_features=params["max_features"],
            min_samples_leaf=params["min_samples_leaf"], random_state=seed, n_jobs=1))
    if kind == "gbr":
        return scaled_target(GradientBoostingRegressor(
            n_estimators=params["n_estimators"], max_depth=params["max_depth"], learning_rate=params["learning_rate"],
            subsample=params["subsample"], max_features=params["max_features"], random_state=seed))
    raise InputError(f"--regressor {kind!r}: choose from auto, {', '.join(REGRESSORS)}, none")


def scaled_target(regressor: Any) -> Any:
    """``regressor`` fitted on the standardized target: scikit-learn's trees stop splitting a node whose
    squared-error impurity is below 2e-16, which a target in units of 1e-8 or smaller never exceeds."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler(), check_inverse=False)


def _fold_maes(kind: str, params: dict, x: np.ndarray, y: np.ndarray, folds: Folds, seed: int) -> np.ndarray:
    """Validation MAE per fold of :func:`make_regressor` (``kind``, ``params``) fitted on each training part."""
    maes = []
    for tr, va in folds:
        est = make_regressor(kind, params, seed).fit(x[tr], y[tr])
        maes.append(np.abs(est.predict(x[va]) - y[va]).mean())
    return np.asarray(maes)


def cv_regressor(kind: str, x: np.ndarray, y: np.ndarray, folds: Folds, seed: int = 0) -> dict:
    """Cross-validate the small hyper-parameter grid of ``kind``; returns the best row of the CV table
    (``params`` = the chosen hyper-parameters, ``grid`` = every configuration and its CV MAE)."""
    t0 = time.perf_counter()
    grid: list[tuple[dict, np.ndarray]] = []
    if x.shape[1] == 0:
        raise InputError("no feature varies on the training data: choose another layer (--layers)")
    if kind == "ridge":
        maes = ridge_cv(x, y, folds)
        grid = [({"alpha": a}, maes[:, i]) for i, a in enumerate(RIDGE_ALPHAS)]
    elif kind == "knn":
        from sklearn.neighbors import NearestNeighbors

        smallest = min(len(tr) for tr, _ in folds)
        ks = sorted({min(k, smallest) for k in KNN_NEIGHBORS})  # tiny data: no more neighbours than rows
        per = {(k, w): [] for k in ks for w in KNN_WEIGHTS}
        for tr, va in folds:  # one neighbour search per fold serves every k and weighting
            xt, xv = _standardize(x[tr], x[va])
            dist, idx = NearestNeighbors(n_neighbors=max(ks), algorithm="brute").fit(xt).kneighbors(xv)
            for k in ks:
                for w in KNN_WEIGHTS:
                    pred = _knn_combine(dist[:, :k], y[tr][idx[:, :k]], w)
                    per[(k, w)].append(np.abs(pred - y[va]).mean())
        grid = [({"n_neighbors": k, "weights": w}, np.asarray(v)) for (k, w), v in per.items()]
    elif kind == "svr":
        from sklearn.svm import SVR

        gamma = 1.0 / x.shape[1]  # = sklearn's gamma="scale" on standardized features
        configs = [{"C": c, "gamma": gamma, "epsilon": SVR_EPSILON} for c in SVR_C]
        if max(len(tr) for tr, _ in folds) > SVR_KERNEL_MAX_ROWS:  # kernel matrices too big: libsvm's own
            grid = [(params, _fold_maes("svr", params, x, y, folds, seed)) for params in configs]
        else:
            per: list[list[float]] = [[] for _ in configs]
            for tr, va in folds:  # one BLAS kernel per fold, shared by every C (same fit as kernel="rbf")
                xt, xv = _standardize(x[tr], x[va])
                y_mean, y_scale = y[tr].mean(), y[tr].std() or 1.0
                sq = (xt * xt).sum(axis=1)
                k_tr = np.exp(-gamma * _sq_dists(xt, xt, sq))
                k_va = np.exp(-gamma * _sq_dists(xv, xt, sq))
                for i, params in enumerate(configs):
                    svr = SVR(kernel="precomputed", C=params["C"], epsilon=SVR_EPSILON)
                    svr.fit(k_tr, (y[tr] - y_mean) / y_scale)
                    per[i].append(np.abs(svr.predict(k_va) * y_scale + y_mean - y[va]).mean())
            grid = [(params, np.asarray(v)) for params, v in zip(configs, per)]
    elif kind == "rf":
        for mf in RF_MAX_FEATURES:
            params = {"n_estimators": RF_TREES, "max_features": mf, "min_samples_leaf": RF_MIN_LEAF}
            grid.append((params, _fold_maes("rf", params, x, y, folds, seed)))
    elif kind == "gbr":
        for depth in GBR_DEPTH:
            per_stage = {n: [] for n in GBR_STAGES}
            base = {"n_estimators": max(GBR_STAGES), "max_depth": depth, "learning_rate": GBR_LEARNING_RATE,
                    "subsample": GBR_SUBSAMPLE, "max_features": "sqrt"}
            for tr, va in folds:
                est = make_regressor("gbr", base, seed).fit(x[tr], y[tr])
                y_mean, y_scale = est.transformer_.mean_[0], est.transformer_.scale_[0]
                for stage, pred in enumerate(est.regressor_.staged_predict(x[va]), start=1):
                    if stage in per_stage:
                        per_stage[stage].append(np.abs(pred * y_scale + y_mean - y[va]).mean())
            grid += [({**base, "n_estimators": n}, np.asarray(v)) for n, v in per_stage.items()]
    else:
        raise InputError(f"--regressor {kind!r}: choose from auto, {', '.join(REGRESSORS)}, none")
    means = [float(np.mean(m)) for _, m in grid]
    best = int(np.argmin(means))
    row = cv_row("regressor", kind, grid[best][0], grid[best][1], time.perf_counter() - t0, len(grid))
    row["grid"] = [{"params": p, "cv_mae": mean} for (p, _), mean in zip(grid, means)]
    return row


def _knn_combine(dist: np.ndarray, y_neigh: np.ndarray, weights: str) -> np.ndarray:
    """scikit-learn's KNeighborsRegressor average (zero distances take all the weight)."""
    if weights == "uniform":
        return y_neigh.mean(axis=1)
    with np.errstate(divide="ignore"):
        w = 1.0 / dist
    inf_mask = np.isinf(w)
    inf_row = inf_mask.any(axis=1)
    w[inf_row] = inf_mask[inf_row]
    return (y_neigh * w).sum(axis=1) / w.sum(axis=1)


# --------------------------------------------------------------------------------------------- export / import


def export_regressor(kind: str, estimator: Any, x_train: np.ndarray | None = None,
                     y_train: np.ndarray | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """A fitted estimator from :func:`make_regressor` as (JSON-able scalars, numpy arrays).

    ``knn`` needs the (unscaled) training features and targets it was fitted on.
    """
    scalars: dict = {"kind": kind}
    arrays: dict[str, np.ndarray] = {}

    def scaler(s: Any) -> None:
        arrays["x_mean"] = np.asarray(s.mean_, dtype=np.float64)
        arrays["x_scale"] = np.asarray(s.scale_, dtype=np.float64)
        if hasattr(s, "lo_"):
            arrays["x_lo"], arrays["x_hi"] = np.asarray(s.lo_, dtype=np.float64), np.asarray(s.hi_, dtype=np.float64)

    if kind == "ridge":
        scaler(estimator.named_steps["scale"])
        model = estimator.named_steps["model"]
        arrays["coef"] = np.asarray(model.coef_, dtype=np.float64).ravel()
        scalars["intercept"] = float(np.ravel(model.intercept_)[0])
    elif kind == "knn":
        if x_train is None or y_train is None:
            raise ValueError("exporting knn needs the training features and targets")
        s = estimator.named_steps["scale"]
        scaler(s)
        model = estimator.named_steps["model"]
        arrays["fit_x"] = s.transform(np.asarray(x_train, dtype=np.float64))
        arrays["fit_y"] = np.asarray(y_train, dtype=np.float64).ravel()
        scalars.update(n_neighbors=int(model.n_neighbors), weights=str(model.weights))
    elif kind == "svr":
        pipe = estimator.regressor_
        scaler(pipe.named_steps["scale"])
        model = pipe.named_steps["model"]
        arrays["support_vectors"] = np.asarray(model.support_vectors_, dtype=np.float64)
        arrays["dual_coef"] = np.asarray(model.dual_coef_, dtype=np.float64).ravel()
        gamma = model.gamma
        if not isinstance(gamma, (int, float)):
            raise ValueError("export needs a numeric SVR gamma")
        scalars.update(intercept=float(np.ravel(model.intercept_)[0]), gamma=float(gamma),
                       y_mean=float(estimator.transformer_.mean_[0]), y_scale=float(estimator.transformer_.scale_[0]))
    elif kind in ("rf", "gbr"):
        forest = estimator.regressor_
        if kind == "rf":
            trees = list(forest.estimators_)
            scalars.update(combine="mean", init=0.0, scale=1.0)
        else:
            trees = [stage[0] for stage in forest.estimators_]
            init = forest.init_
            init_value = 0.0 if isinstance(init, str) else float(np.ravel(init.constant_)[0])
            scalars.update(combine="sum", init=init_value, scale=float(forest.learning_rate))
        arrays.update(_forest_arrays(trees))
        scalars.update(n_features=int(forest.n_features_in_),  # trees need not split on the last features
                       y_mean=float(estimator.transformer_.mean_[0]), y_scale=float(estimator.transformer_.scale_[0]))
    else:
        raise ValueError(f"unknown regressor kind {kind!r}")
    return scalars, arrays


def _forest_arrays(trees: list[Any]) -> dict[str, np.ndarray]:
    """Fitted scikit-learn trees as flat node arrays (children offset into one array; leaves: -1)."""
    lefts, rights, feats, thrs, vals, roots = [], [], [], [], [], []
    offset = 0
    for t in trees:
        tr = t.tree_
        cl = np.asarray(tr.children_left, dtype=np.int64)
        cr = np.asarray(tr.children_right, dtype=np.int64)
        leaf = cl < 0
        lefts.append(np.where(leaf, -1, cl + offset))
        rights.append(np.where(leaf, -1, cr + offset))
        feats.append(np.where(leaf, 0, tr.feature).astype(np.int32))
        thrs.append(np.asarray(tr.threshold, dtype=np.float64))
        vals.append(np.asarray(tr.value, dtype=np.float64).reshape(tr.node_count, -1)[:, 0])
        roots.append(offset)
        offset += tr.node_count
    small = np.int32 if offset < 2**31 - 1 else np.int64
    return {"tree_left": np.concatenate(lefts).astype(small), "tree_right": np.concatenate(rights).astype(small),
            "tree_feature": np.concatenate(feats), "tree_threshold": np.concatenate(thrs),
            "tree_value": np.concatenate(vals), "tree_roots": np.asarray(roots, dtype=np.int64)}


_REQUIRED = {
    "ridge": ("x_mean", "x_scale", "coef"),
    "knn": ("x_mean", "x_scale", "fit_x", "fit_y"),
    "svr": ("x_mean", "x_scale", "support_vectors", "dual_coef"),
    "rf": ("tree_left", "tree_right", "tree_feature", "tree_threshold", "tree_value", "tree_roots"),
    "gbr": ("tree_left", "tree_right", "tree_feature", "tree_threshold", "tree_value", "tree_roots"),
}


class ExportedRegressor:
    """A regressor rebuilt from :func:`export_regressor` output; predicts with numpy only."""

    def __init__(self, scalars: dict, arrays: dict[str, np.ndarray]) -> None:
        kind = scalars.get("kind")
        if kind not in _REQUIRED:
            raise InputError(f"unknown regressor kind {kind!r} in the saved model")
        missing = [k for k in _REQUIRED[kind] if k not in arrays]
        if missing:
            raise InputError(f"saved {kind} regressor lacks arrays {missing}")
        self.kind = kind
        self.scalars = dict(scalars)
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        if kind in ("rf", "gbr"):
            n_nodes = len(self.arrays["tree_value"])
            for key in ("tree_left", "tree_right", "tree_feature", "tree_threshold"):
                if len(self.arrays[key]) != n_nodes:
                    raise InputError(f"saved {kind} regressor: {key} has {len(self.arrays[key])} nodes, not {n_nodes}")
            for key in ("tree_left", "tree_right"):
                a = self.arrays[key]
                if a.size and (a.max() >= n_nodes or a.min() < -1):
                    raise InputError(f"saved {kind} regressor: {key} points outside the trees")

    def _recorded_width(self) -> int | None:
        """The input width saved with the regressor (None: trees saved before widths were recorded)."""
        if "x_mean" in self.arrays:
            return int(len(self.arrays["x_mean"]))
        return int(self.scalars["n_features"]) if "n_features" in self.scalars else None

    @property
    def n_features(self) -> int:
        """Number of input features the regressor expects."""
        width = self._recorded_width()
        return width if width is not None else self.min_features()

    def min_features(self) -> int:
        """The fewest input features the regressor can take (trees: one past the highest feature they split on)."""
        if "x_mean" in self.arrays:
            return int(len(self.arrays["x_mean"]))
        feature = self.arrays["tree_feature"]
        return int(feature.max()) + 1 if len(feature) else 0

    def accepts(self, n: int) -> bool:
        """Whether an ``(rows, n)`` feature matrix fits (saved trees without a recorded width: any ``n`` wide
        enough for the features they split on)."""
        width = self._recorded_width()
        return n == width if width is not None else n >= self.min_features()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for an (n, n_features) matrix, as the fitted scikit-learn model gives them."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D, got shape {x.shape}")
        a, s = self.arrays, self.scalars
        if "x_mean" in a:
            if x.shape[1] != len(a["x_mean"]):
                raise ValueError(f"{x.shape[1]} features given, the regressor was fitted on {len(a['x_mean'])}")
            xs = (x - a["x_mean"]) / a["x_scale"]
            if "x_lo" in a:  # regressors saved before the bound have none: unbounded, as fitted
                xs = near_range(xs, a["x_lo"], a["x_hi"])
        if self.kind == "ridge":
            return xs @ a["coef"] + s["intercept"]
        if self.kind == "knn":
            return _knn_predict(xs, a["fit_x"], a["fit_y"], int(s["n_neighbors"]), str(s["weights"]))
        if self.kind == "svr":
            return _svr_predict(xs, a["support_vectors"], a["dual_coef"], s["intercept"], s["gamma"]) * \
                s["y_scale"] + s["y_mean"]
        # y_mean/y_scale: trees fitted on the standardized target (saved before: the raw target)
        return _forest_predict(a, x, s["combine"], s["init"], s["scale"]) * s.get("y_scale", 1.0) + \
            s.get("y_mean", 0.0)


def _sq_dists(x: np.ndarray, ref: np.ndarray, ref_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (rows of ``x`` x rows of ``ref``), clipped at 0."""
    d = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ ref.T) + ref_sq[None, :]
    return np.maximum(d, 0.0)


def _knn_predict(xs: np.ndarray, fit_x: np.ndarray, fit_y: np.ndarray, k: int, weights: str) -> np.ndarray:
    """Brute-force k-nearest-neighbour regression, in chunks of rows."""
    k = min(k, len(fit_x))
    ref_sq = (fit_x * fit_x).sum(axis=1)
    out = np.empty(len(xs))
    step = max(1, 4_000_000 // max(1, len(fit_x)))
    for start in range(0, len(xs), step):
        d = _sq_dists(xs[start:start + step], fit_x, ref_sq)
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.argsort(d, axis=1)
        dist = np.sqrt(np.take_along_axis(d, part, axis=1))
        out[start:start + len(d)] = _knn_combine(dist, fit_y[part], weights)
    return out


def _svr_predict(xs: np.ndarray, sv: np.ndarray, dual: np.ndarray, intercept: float, gamma: float) -> np.ndarray:
    """RBF-kernel SVR decision function, in chunks of rows."""
    sv_sq = (sv * sv).sum(axis=1)
    out = np.empty(len(xs))
    step = max(1, 4_000_000 // max(1, len(sv)))
    for start in range(0, len(xs), step):
        k = np.exp(-gamma * _sq_dists(xs[start:start + step], sv, sv_sq))
        out[start:start + step] = k @ dual + intercept
    return out


def _forest_predict(a: dict, x: np.ndarray, combine: str, init: float, scale: float) -> np.ndarray:
    """All trees at once: each (row, tree) pair walks down until it reaches a leaf.

    Features are compared as float32 against float64 thresholds, as scikit-learn's trees do.
    """
    left, right, feat = a["tree_left"].astype(np.int64), a["tree_right"].astype(np.int64), a["tree_feature"]
    thr, val, roots = a["tree_threshold"], a["tree_value"], a["tree_roots"]
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if len(feat) and x32.shape[1] <= int(feat.max()):
        raise ValueError(f"{x32.shape[1]} features given, the trees use feature {int(feat.max())}")
    n_trees = len(roots)
    out = np.empty(len(x32))
    step = max(1, 2_000_000 // max(1, n_trees))
    for start in range(0, len(x32), step):
        xb = x32[start:start + step]
        m = len(xb)
        node = np.tile(roots, m)
        row = np.repeat(np.arange(m), n_trees)
        active = np.flatnonzero(left[node] >= 0)
        while active.size:
            nd = node[active]
            go_left = xb[row[active], feat[nd]] <= thr[nd]
            node[active] = np.where(go_left, left[nd], right[nd])
            active = active[left[node[active]] >= 0]
        leaf = val[node].reshape(m, n_trees)
        if combine == "mean":
            out[start:start + m] = leaf.sum(axis=1) / n_trees
        else:
            out[start:start + m] = init + scale * leaf.sum(axis=1)
    return out


def save_regressor(out_dir: Path, scalars: dict, arrays: dict[str, np.ndarray], extra: dict) -> None:
    """``regressor.npz`` (no object arrays) and ``regressor.json`` (scalars + ``extra`` + npz sha256)."""
    with atomic_path(out_dir / REGRESSOR_NPZ) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    meta = {"format": FORMAT, **extra, "regressor": scalars, "arrays_file": REGRESSOR_NPZ,
            "arrays_sha256": sha256_of(out_dir / REGRESSOR_NPZ)}
    write_json(out_dir / REGRESSOR_JSON, meta)


def load_regressor_files(out_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read ``regressor.json`` and ``regressor.npz`` (no code runs: JSON and plain arrays only)."""
    jpath, npath = out_dir / REGRESSOR_JSON, out_dir / REGRESSOR_NPZ
    if not jpath.is_file() or not npath.is_file():
        raise InputError(f"{out_dir}: no fitted regressor here (features only: extracted with --regressor none)")
    try:
        meta = json.loads(jpath.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{jpath}: corrupted ({exc})") from None
    if meta.get("format") not in READABLE_FORMATS:
        raise InputError(f"{jpath}: not an elemnet_tl feature model (format {meta.get('format')!r})")
    if meta.get("arrays_sha256") and meta["arrays_sha256"] != sha256_of(npath):
        raise InputError(f"{npath}: contents differ from what {REGRESSOR_JSON} records (sha256 mismatch)")
    try:
        with np.load(npath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # corrupted archive
        raise InputError(f"{npath}: not a readable array file ({str(exc).splitlines()[0][:120]})") from None
    return meta, arrays


def format_params(params: dict) -> str:
    """``k=v, ...`` with floats to 3 significant digits (progress lines)."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
