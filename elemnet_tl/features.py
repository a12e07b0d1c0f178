"""The pretrained network as a feature extractor for scikit-learn regressors.

:class:`PretrainedFeatures` turns element fractions into the activations of chosen layers of a
pretrained ElemNet (optionally with Magpie physical attributes). :func:`extract_features` chooses the
layer and a regressor by cross-validation on the training data, fits the regressor, and writes a
directory that ``elemtl predict --model DIR`` can use (:func:`is_feature_run`,
:func:`load_feature_model`).

Fitted regressors are saved without pickle: ``regressor.json`` (kind, hyper-parameters, scalars,
feature names) plus ``regressor.npz`` (arrays; loaded with ``allow_pickle=False``). Predictions of a
loaded regressor are computed here in numpy (own tree traversal, kernel and neighbour code) and
reproduce the fitted scikit-learn model to ~1e-12.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from .checkpoint import CARD_FILE, MODEL_FILE, STATE_FILE, load_model
from .datasets import sha256_of
from .elements import N_ELEMENTS
from .errors import InputError
from .io import atomic_path, write_json, write_table

FORMAT = "elemnet_tl.features/1"
COMMAND_KIND = "extract-features"
FEATURES_FILE = "features.parquet"
TEST_FEATURES_FILE = "test_features.parquet"
TEST_PREDICTIONS_FILE = "test_predictions.csv"
REGRESSOR_JSON = "regressor.json"
REGRESSOR_NPZ = "regressor.npz"
OUTPUT_FILES = (CARD_FILE, FEATURES_FILE, TEST_FEATURES_FILE, TEST_PREDICTIONS_FILE, REGRESSOR_JSON, REGRESSOR_NPZ,
                "train.rejected.csv", "test.rejected.csv")

REGRESSORS = ("rf", "gbr", "ridge", "svr", "knn")
"""Regressors ``auto`` chooses among (``none``: write features only)."""
MAX_CANDIDATE_LAYERS = 6
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
BATCH = 4096


# --------------------------------------------------------------------------------------------- layers


def candidate_layers(model) -> list[str]:
    """Layers ``auto`` compares: the first hidden layer and the last layer of each width group, at most
    :data:`MAX_CANDIDATE_LAYERS` (group ends next to the last hidden layer are dropped first; the last
    hidden layer stays). Default ElemNet: fc1, fc4, fc7, fc10, fc13, fc16."""
    hidden = model.layer_names[:-1]
    if not hidden:
        return list(model.layer_names)
    cands = list(dict.fromkeys([hidden[0], *(names[-1] for key, names in model.groups.items() if key != "head")]))
    while len(cands) > MAX_CANDIDATE_LAYERS:
        del cands[-2]
    return cands


def parse_layers(spec: str | list[str] | tuple[str, ...], model) -> list[str] | None:
    """``"auto"`` -> None; ``"fc4,fc7"`` or a list -> validated layer names in forward order."""
    if isinstance(spec, str):
        if spec.strip().lower() == "auto":
            return None
        names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = [str(s).strip() for s in spec]
    if not names:
        raise InputError("--layers: give 'auto' or layer names such as fc4 or fc4,fc7")
    unknown = [n for n in names if n not in model.layer_names]
    if unknown:
        raise InputError(f"--layers {','.join(unknown)}: no such layer in this network "
                         f"(layers: {model.layer_names[0]} ... {model.layer_names[-2]}, out)")
    order = {name: i for i, name in enumerate(model.layer_names)}
    return sorted(dict.fromkeys(names), key=order.__getitem__)


def layer_width(model, name: str) -> int:
    return int(model.layers[name].out_features)


def layer_feature_names(model, layers: list[str], with_pa: bool) -> list[str]:
    """``fc4_0000`` ... per unit of each layer, then the ``pa_*`` columns."""
    names = [f"{layer}_{i:04d}" for layer in layers for i in range(layer_width(model, layer))]
    if with_pa:
        from .physical import feature_labels

        names += feature_labels()
    return names


# --------------------------------------------------------------------------------------------- CV


def cv_folds(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
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
    if n < SMALL_DATA:
        return f"{N_FOLDS}-fold cross-validation repeated {N_REPEATS_SMALL} times on the training data"
    return f"{N_FOLDS}-fold cross-validation on the training data"


def _standardize(x_tr: np.ndarray, x_va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x_tr.mean(axis=0)
    scale = x_tr.std(axis=0)
    scale[scale == 0] = 1.0
    return (x_tr - mean) / scale, (x_va - mean) / scale


def ridge_cv(x: np.ndarray, y: np.ndarray, folds, alphas=RIDGE_ALPHAS) -> np.ndarray:
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


def _row(stage: str, candidate: str, params: dict, maes: np.ndarray, seconds: float, n_configs: int) -> dict:
    return {"stage": stage, "candidate": candidate, "params": params, "cv_mae": float(np.mean(maes)),
            "cv_mae_std": float(np.std(maes)), "n_configs": int(n_configs), "seconds": round(seconds, 2)}


def _best(table: list[dict]) -> dict:
    """The first row with the lowest CV MAE."""
    return min(table, key=lambda r: r["cv_mae"])


def _reason(table: list[dict], chosen: dict, what: str) -> str:
    others = [r for r in table if r is not chosen]
    text = f"lowest CV MAE {chosen['cv_mae']:.4g}"
    if what:
        text += f" ({what})"
    if others:
        runner = _best(others)
        text += f"; next best {runner['candidate']} {runner['cv_mae']:.4g}"
    return text


# --------------------------------------------------------------------------------------------- transformer


def _check_fractions(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != N_ELEMENTS:
        raise InputError(f"fractions must have shape (n, {N_ELEMENTS}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError("fractions contain NaN or infinite values")
    return arr


class PretrainedFeatures(TransformerMixin, BaseEstimator):
    """Activations of layers of a pretrained ElemNet as features (scikit-learn transformer).

    Parameters
    ----------
    source : ``"bundled"``, a run directory or a ``.safetensors`` file.
    layers : ``"auto"`` (needs ``y`` in :meth:`fit`: the candidate layer whose standardized activations
        a ridge probe predicts best in cross-validation), a layer name, ``"fc4,fc7"`` or a list.
    with_pa : append Magpie physical attributes (NaN -> training median).
    drop_constant : leave out columns constant on the training data (dead ReLU units).
    seed : seeds the CV folds of ``layers="auto"``.
    device : ``auto``, ``cpu`` or ``cuda`` for the forward pass (float64).

    Fitted attributes: ``layers_``, ``feature_names_all_``, ``mask_`` (kept columns),
    ``feature_names_out_``, ``pa_medians_`` (or None), ``source_path_``, ``source_sha256_``,
    ``source_arch_``, ``cv_table_`` (layer probe rows; empty unless auto), ``n_features_in_``.
    """

    def __init__(self, source: str = "bundled", layers: str | list[str] = "auto", with_pa: bool = False,
                 drop_constant: bool = True, seed: int = 0, device: str = "cpu") -> None:
        self.source = source
        self.layers = layers
        self.with_pa = with_pa
        self.drop_constant = drop_constant
        self.seed = seed
        self.device = device

    # -- network -------------------------------------------------------------------------------------
    def _load_network(self) -> None:
        from .training import resolve_device

        dev = resolve_device(self.device)
        loaded = load_model(self.source, "cpu")
        net = loaded.model.double().to(dev)
        net.eval()
        self._net = net
        self._net_key = (str(self.source), str(self.device))
        self.source_path_ = str(loaded.path)
        self.source_sha256_ = sha256_of(loaded.path)
        self.source_arch_ = loaded.info.arch
        self.source_target_ = {"name": loaded.info.target, "unit": loaded.info.unit}

    def _network(self):
        if getattr(self, "_net", None) is None:
            self._load_network()
        return self._net

    def activations(self, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        """Float64 activations of ``layers`` for fractions ``x`` (batched forward pass)."""
        net = self._network()
        dev = next(net.parameters()).device
        parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        with torch.no_grad():
            for start in range(0, len(x), BATCH):
                xb = torch.as_tensor(x[start:start + BATCH], dtype=torch.float64, device=dev)
                acts = net.activations(xb, list(layers))
                for name in layers:
                    parts[name].append(acts[name].cpu().numpy().astype(np.float64, copy=False))
        return {name: (np.concatenate(p) if p else np.zeros((0, layer_width(net, name)))) for name, p in parts.items()}

    # -- sklearn API -----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> PretrainedFeatures:
        x = _check_fractions(X)
        if getattr(self, "_net", None) is None or self._net_key != (str(self.source), str(self.device)):
            self._load_network()
        net = self._net
        chosen = parse_layers(self.layers, net)
        self.cv_table_: list[dict] = []
        if chosen is None:
            if y is None:
                raise InputError("layers='auto' chooses the layer by cross-validation: fit needs targets y")
            y_arr = np.asarray(y, dtype=np.float64).ravel()
            if len(y_arr) != len(x):
                raise InputError(f"{len(x)} rows of fractions but {len(y_arr)} targets")
            chosen = [self._choose_layer(x, y_arr)]
        self.layers_ = chosen
        self.feature_names_all_ = layer_feature_names(net, chosen, self.with_pa)
        self.pa_medians_ = None
        raw = self._raw(x, fitting=True)
        self.mask_ = (np.ptp(raw, axis=0) > 0) if (self.drop_constant and len(raw)) else np.ones(raw.shape[1], bool)
        self.feature_names_out_ = [n for n, keep in zip(self.feature_names_all_, self.mask_) if keep]
        self.n_features_in_ = N_ELEMENTS
        return self

    def _choose_layer(self, x: np.ndarray, y: np.ndarray) -> str:
        candidates = candidate_layers(self._net)
        folds = cv_folds(len(x), self.seed)
        acts = self.activations(x, candidates)
        for name in candidates:
            t0 = time.perf_counter()
            a = acts[name]
            a = a[:, np.ptp(a, axis=0) > 0] if len(a) else a
            maes = ridge_cv(a, y, folds)
            best = int(np.argmin(maes.mean(axis=0)))
            row = _row("layer", name, {"probe": "ridge", "alpha": RIDGE_ALPHAS[best]}, maes[:, best],
                       time.perf_counter() - t0, len(RIDGE_ALPHAS))
            row["width"] = layer_width(self._net, name)
            row["varying_units"] = int(a.shape[1])
            self.cv_table_.append(row)
        return _best(self.cv_table_)["candidate"]

    def _raw(self, x: np.ndarray, fitting: bool = False) -> np.ndarray:
        acts = self.activations(x, self.layers_)
        blocks = [acts[name] for name in self.layers_]
        if self.with_pa:
            from .physical import feature_labels, physical_attributes

            n_pa = len(feature_labels())
            pa = physical_attributes(x) if len(x) else np.zeros((0, n_pa))
            pa = np.where(np.isfinite(pa), pa, np.nan)
            if fitting:
                med = np.zeros(n_pa)
                if len(pa):
                    seen = ~np.isnan(pa).all(axis=0)
                    med[seen] = np.nanmedian(pa[:, seen], axis=0)
                self.pa_medians_ = med
            blocks.append(np.where(np.isnan(pa), self.pa_medians_[None, :], pa))
        return np.concatenate(blocks, axis=1)

    def transform_all(self, X: Any) -> np.ndarray:
        """Every column of the chosen layers (constant ones included), PA imputed."""
        self._check_fitted()
        return self._raw(_check_fractions(X))

    def transform(self, X: Any) -> np.ndarray:
        """The kept feature columns (``feature_names_out_``), float64."""
        return self.transform_all(X)[:, self.mask_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self.feature_names_out_, dtype=object)

    def _check_fitted(self) -> None:
        if not hasattr(self, "mask_"):
            raise RuntimeError("PretrainedFeatures is not fitted yet: call fit first")

    @classmethod
    def restore(cls, source: str, layers: list[str], with_pa: bool, mask: np.ndarray,
                pa_medians: np.ndarray | None, device: str = "cpu") -> PretrainedFeatures:
        """A fitted transformer from saved state (the source network is loaded on first use)."""
        self = cls(source=source, layers=list(layers), with_pa=with_pa, device=device)
        self._load_network()
        self.layers_ = list(layers)
        self.feature_names_all_ = layer_feature_names(self._net, self.layers_, with_pa)
        if len(mask) != len(self.feature_names_all_):
            raise InputError(f"saved feature mask has {len(mask)} columns but layers {layers} give "
                             f"{len(self.feature_names_all_)}")
        self.mask_ = np.asarray(mask, dtype=bool)
        self.pa_medians_ = None if pa_medians is None else np.asarray(pa_medians, dtype=np.float64)
        self.feature_names_out_ = [n for n, keep in zip(self.feature_names_all_, self.mask_) if keep]
        self.cv_table_ = []
        self.n_features_in_ = N_ELEMENTS
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_net", None)
        return state


# --------------------------------------------------------------------------------------------- regressors


def make_regressor(kind: str, params: dict, seed: int = 0):
    """The scikit-learn estimator for ``kind`` with ``params`` (feature scaling included where needed)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if kind == "ridge":
        return Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=params["alpha"]))])
    if kind == "knn":
        return Pipeline([("scale", StandardScaler()), ("model", KNeighborsRegressor(
            n_neighbors=params["n_neighbors"], weights=params["weights"], algorithm="brute"))])
    if kind == "svr":
        svr = SVR(kernel="rbf", C=params["C"], gamma=params["gamma"], epsilon=params["epsilon"], cache_size=500)
        return TransformedTargetRegressor(regressor=Pipeline([("scale", StandardScaler()), ("model", svr)]),
                                          transformer=StandardScaler(), check_inverse=False)
    if kind == "rf":
        return RandomForestRegressor(n_estimators=params["n_estimators"], max_features=params["max_features"],
                                     min_samples_leaf=params["min_samples_leaf"], random_state=seed, n_jobs=1)
    if kind == "gbr":
        return GradientBoostingRegressor(n_estimators=params["n_estimators"], max_depth=params["max_depth"],
                                         learning_rate=params["learning_rate"], subsample=params["subsample"],
                                         max_features=params["max_features"], random_state=seed)
    raise InputError(f"--regressor {kind!r}: choose from auto, {', '.join(REGRESSORS)}, none")


def _fold_maes(kind: str, params: dict, x, y, folds, seed) -> np.ndarray:
    maes = []
    for tr, va in folds:
        est = make_regressor(kind, params, seed).fit(x[tr], y[tr])
        maes.append(np.abs(est.predict(x[va]) - y[va]).mean())
    return np.asarray(maes)


def cv_regressor(kind: str, x: np.ndarray, y: np.ndarray, folds, seed: int = 0) -> dict:
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
                for stage, pred in enumerate(est.staged_predict(x[va]), start=1):
                    if stage in per_stage:
                        per_stage[stage].append(np.abs(pred - y[va]).mean())
            grid += [({**base, "n_estimators": n}, np.asarray(v)) for n, v in per_stage.items()]
    else:
        raise InputError(f"--regressor {kind!r}: choose from auto, {', '.join(REGRESSORS)}, none")
    means = [float(np.mean(m)) for _, m in grid]
    best = int(np.argmin(means))
    row = _row("regressor", kind, grid[best][0], grid[best][1], time.perf_counter() - t0, len(grid))
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


def export_regressor(kind: str, estimator, x_train: np.ndarray | None = None,
                     y_train: np.ndarray | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """A fitted estimator from :func:`make_regressor` as (JSON-able scalars, numpy arrays).

    ``knn`` needs the (unscaled) training features and targets it was fitted on.
    """
    scalars: dict = {"kind": kind}
    arrays: dict[str, np.ndarray] = {}

    def scaler(s) -> None:
        arrays["x_mean"] = np.asarray(s.mean_, dtype=np.float64)
        arrays["x_scale"] = np.asarray(s.scale_, dtype=np.float64)

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
        if kind == "rf":
            trees = list(estimator.estimators_)
            scalars.update(combine="mean", init=0.0, scale=1.0)
        else:
            trees = [stage[0] for stage in estimator.estimators_]
            init = estimator.init_
            init_value = 0.0 if isinstance(init, str) else float(np.ravel(init.constant_)[0])
            scalars.update(combine="sum", init=init_value, scale=float(estimator.learning_rate))
        arrays.update(_forest_arrays(trees))
    else:
        raise ValueError(f"unknown regressor kind {kind!r}")
    return scalars, arrays


def _forest_arrays(trees) -> dict[str, np.ndarray]:
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

    @property
    def n_features(self) -> int:
        a = self.arrays
        if "x_mean" in a:
            return int(len(a["x_mean"]))
        return int(a["tree_feature"].max()) + 1 if len(a["tree_feature"]) else 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D, got shape {x.shape}")
        a, s = self.arrays, self.scalars
        if "x_mean" in a:
            if x.shape[1] != len(a["x_mean"]):
                raise ValueError(f"{x.shape[1]} features given, the regressor was fitted on {len(a['x_mean'])}")
            xs = (x - a["x_mean"]) / a["x_scale"]
        if self.kind == "ridge":
            return xs @ a["coef"] + s["intercept"]
        if self.kind == "knn":
            return _knn_predict(xs, a["fit_x"], a["fit_y"], int(s["n_neighbors"]), str(s["weights"]))
        if self.kind == "svr":
            return _svr_predict(xs, a["support_vectors"], a["dual_coef"], s["intercept"], s["gamma"]) * \
                s["y_scale"] + s["y_mean"]
        return _forest_predict(a, x, s["combine"], s["init"], s["scale"])


def _sq_dists(x: np.ndarray, ref: np.ndarray, ref_sq: np.ndarray) -> np.ndarray:
    d = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ ref.T) + ref_sq[None, :]
    return np.maximum(d, 0.0)


def _knn_predict(xs, fit_x, fit_y, k, weights) -> np.ndarray:
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


def _svr_predict(xs, sv, dual, intercept, gamma) -> np.ndarray:
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
    if meta.get("format") != FORMAT:
        raise InputError(f"{jpath}: not an elemnet_tl feature model (format {meta.get('format')!r})")
    if meta.get("arrays_sha256") and meta["arrays_sha256"] != sha256_of(npath):
        raise InputError(f"{npath}: contents differ from what {REGRESSOR_JSON} records (sha256 mismatch)")
    try:
        with np.load(npath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # corrupted archive
        raise InputError(f"{npath}: not a readable array file ({str(exc).splitlines()[0][:120]})") from None
    return meta, arrays


# --------------------------------------------------------------------------------------------- feature model


@dataclass
class FeatureModel:
    """A saved feature run: source network -> features -> regressor."""

    path: Path
    card: dict
    features: PretrainedFeatures
    regressor: ExportedRegressor

    def predict(self, fractions: np.ndarray) -> np.ndarray:
        """Predictions (target units) for an (n, 86) fraction matrix."""
        x = _check_fractions(fractions)
        if len(x) == 0:
            return np.zeros(0)
        return self.regressor.predict(self.features.transform(x))


def is_feature_run(path: str | Path) -> bool:
    """True when ``path`` is a directory written by :func:`extract_features`."""
    card = Path(str(path)) / CARD_FILE
    if not card.is_file():
        return False
    try:
        return json.loads(card.read_text()).get("command_kind") == COMMAND_KIND
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def load_feature_model(path: str | Path, device: str = "cpu") -> FeatureModel:
    """Reload a feature run: the source network named in the card (checked by sha256) and the regressor.

    Raises :class:`InputError` (one line) for a directory without a regressor, a missing or changed
    source network, or corrupted files.
    """
    out_dir = Path(str(path))
    if not is_feature_run(out_dir):
        raise InputError(f"{out_dir}: not an extract-features directory (no card.json of kind {COMMAND_KIND!r})")
    card = json.loads((out_dir / CARD_FILE).read_text())
    meta, arrays = load_regressor_files(out_dir)
    src = card.get("source") or meta.get("source") or {}
    given = src.get("given")
    if not given:
        raise InputError(f"{out_dir / CARD_FILE}: names no source network")
    from .checkpoint import resolve_model_path

    try:
        model_path = resolve_model_path(given)
    except InputError as exc:
        raise InputError(f"{out_dir}: its source network is unavailable: {exc}") from None
    digest = sha256_of(model_path)
    if src.get("sha256") and digest != src["sha256"]:
        raise InputError(f"{out_dir}: source network {given} ({model_path}) changed since the features were "
                         f"extracted (sha256 {digest[:12]}..., card says {src['sha256'][:12]}...)")
    feats = meta.get("features") or {}
    features = PretrainedFeatures.restore(given, feats.get("layers") or [], bool(feats.get("with_pa")),
                                          arrays.pop("feature_mask"), arrays.pop("pa_medians", None), device)
    if features.feature_names_out_ != list(feats.get("names") or []):
        raise InputError(f"{out_dir}: saved feature names do not match the source network's layers")
    regressor = ExportedRegressor(meta["regressor"], arrays)
    if regressor.n_features != len(features.feature_names_out_):
        raise InputError(f"{out_dir}: regressor expects {regressor.n_features} features, "
                         f"the layers give {len(features.feature_names_out_)}")
    return FeatureModel(out_dir, card, features, regressor)


# --------------------------------------------------------------------------------------------- the command


@dataclass
class FeatureRunResult:
    """What :func:`extract_features` returns."""

    out_dir: Path
    card: dict
    layers: list[str]
    regressor: str
    """Chosen regressor kind, or ``"none"``."""
    cv_table: pd.DataFrame
    """One row per candidate (``stage`` = layer | regressor, ``candidate``, ``params``, ``cv_mae`` ...)."""
    test_predictions: np.ndarray | None = None
    model: FeatureModel | None = None
    timings: dict = field(default_factory=dict)

    @property
    def metrics(self) -> dict:
        return self.card["metrics"]


def _data_record(f) -> dict:
    prov = {k: v for k, v in f.table.provenance.items() if k in ("source", "path", "sha256", "name", "citation")}
    return {**prov, **f.counts()}


def _feature_frame(featurized, names: list[str], values: np.ndarray) -> pd.DataFrame:
    cols: dict[str, Any] = {"formula": featurized.frame["formula"].to_numpy()}
    if "target" in featurized.frame:
        cols["target"] = featurized.frame["target"].to_numpy(dtype=np.float64)
    return pd.concat([pd.DataFrame(cols), pd.DataFrame(values, columns=names)], axis=1)


def _source_given(source: str | Path) -> str:
    text = str(source)
    if text == "bundled" or text.startswith("bundled:"):
        return text
    return str(Path(text).expanduser().resolve())


def extract_features(
    data: str | Path,
    out_dir: str | Path,
    *,
    source: str | Path = "bundled",
    layers: str | list[str] = "auto",
    regressor: str = "auto",
    with_pa: bool = False,
    test: str | Path | None = None,
    seed: int = 0,
    formula_col: str | None = None,
    target_col: str | None = None,
    duplicates: str = "auto",
    device: str = "auto",
    show_progress: bool = True,
    overwrite: bool = False,
) -> FeatureRunResult:
    """Features from a pretrained network (+ a regressor chosen by CV) written to ``out_dir``.

    ``layers``: ``auto`` (the candidate layer a ridge probe predicts best in cross-validation on the
    training data), a layer name or ``"fc4,fc7"``. ``regressor``: ``auto`` (the one of rf, gbr, ridge,
    svr, knn with the lowest CV MAE), one of them (its hyper-parameters still chosen by CV) or ``none``
    (features only). ``test`` is scored once at the end (never deduplicated).

    Writes ``features.parquet`` (formula, target, one column per unit), ``card.json`` (metrics:
    ``val_mae`` = CV MAE on the training data), ``regressor.json`` + ``regressor.npz`` and, with a test
    file, ``test_features.parquet`` and ``test_predictions.csv``.
    """
    from .featurize import load_and_prepare, write_rejected
    from .progress import console
    from .runs import prepare_run_dir, provenance, regression_metrics
    from .training import resolve_device

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    regressor = str(regressor).strip().lower()
    if regressor not in ("auto", "none", *REGRESSORS):
        raise InputError(f"--regressor {regressor!r}: choose from auto, {', '.join(REGRESSORS)}, none")
    auto_layers = isinstance(layers, str) and layers.strip().lower() == "auto"
    if test is not None and regressor == "none":
        raise InputError("--test needs a regressor to score (not --regressor none)")
    dev = resolve_device(device)

    def say(text: str) -> None:
        if show_progress:
            console.print(text, highlight=False, soft_wrap=True)

    need_target = regressor != "none" or auto_layers
    train = load_and_prepare(data, formula_col, target_col, duplicates, require_target=need_target)
    has_target = train.table.has_target
    test_f = load_and_prepare(test, formula_col, target_col, "keep") if test is not None else None
    given = _source_given(source)
    transformer = PretrainedFeatures(source=given, layers=layers, with_pa=with_pa, seed=seed, device=str(dev))
    transformer._load_network()  # a bad source fails before the output directory is touched
    parse_layers(layers, transformer._net)
    x = train.fractions
    y = train.target if has_target else None
    if need_target:
        folds = cv_folds(len(x), seed)  # fails early on too few rows

    target_dir = Path(out_dir)
    if target_dir.resolve() == Path(transformer.source_path_).resolve().parent:
        raise InputError(f"{target_dir}: is the source network's directory; write the features elsewhere")
    if not overwrite and target_dir.is_dir() and any(
            (target_dir / f).exists() for f in (CARD_FILE, FEATURES_FILE, MODEL_FILE, STATE_FILE)):
        raise InputError(f"{target_dir}: already holds an extraction or a run; pass --overwrite to replace it")
    out = prepare_run_dir(target_dir, resume=False, overwrite=overwrite)
    if overwrite:
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    notes = []
    for name, f in (("train", train), ("test", test_f)):
        if f is not None and write_rejected(f, out / f"{name}.rejected.csv") is not None:
            notes.append(f"{f.n_rejected} rejected row(s) of {f.table.source} listed in {out / f'{name}.rejected.csv'}")
    for note in notes:
        say(note)
    say(train.summary())

    t0 = time.perf_counter()
    if auto_layers:
        say(f"choosing a layer: ridge probe, {describe_cv(len(x))} ...")
    transformer.fit(x, y)
    for row in transformer.cv_table_:
        say(f"  {row['candidate']}: CV MAE {row['cv_mae']:.4g} ({row['varying_units']} varying units)")
    timings["layer_selection_s"] = round(time.perf_counter() - t0, 2)
    layer_rows = list(transformer.cv_table_)
    t0 = time.perf_counter()
    raw = transformer.transform_all(x)
    feats = raw[:, transformer.mask_]
    timings["features_s"] = round(time.perf_counter() - t0, 2)
    names_all = transformer.feature_names_all_
    dropped = [n for n, keep in zip(names_all, transformer.mask_) if not keep]
    if regressor != "none" and feats.shape[1] == 0:
        raise InputError(f"layer(s) {','.join(transformer.layers_)}: no unit varies on the training data; "
                         "choose other --layers")
    write_table(_feature_frame(train, names_all, raw), out / FEATURES_FILE)
    layer_reason = (_reason(layer_rows, _best(layer_rows), "ridge probe") if auto_layers else "given (--layers)")

    reg_rows: list[dict] = []
    chosen_kind, chosen_row, predictor, test_pred = "none", None, None, None
    metrics = {"val_mae": None, "test_mae": None, "test_rmse": None, "test_r2": None}
    reg_record = None
    if regressor != "none":
        kinds = REGRESSORS if regressor == "auto" else (regressor,)
        if regressor == "auto" and len(x) > SVR_AUTO_MAX_ROWS:
            kinds = tuple(k for k in kinds if k != "svr")
            say(f"svr left out: more than {SVR_AUTO_MAX_ROWS} training rows (ask for it with --regressor svr)")
        t0 = time.perf_counter()
        for kind in kinds:
            say(f"cross-validating {kind} ...")
            row = cv_regressor(kind, feats, y, folds, seed)
            reg_rows.append(row)
            say(f"  {kind}: CV MAE {row['cv_mae']:.4g} ({_fmt_params(row['params'])}; {row['seconds']:.1f} s)")
        timings["regressor_selection_s"] = round(time.perf_counter() - t0, 2)
        chosen_row = _best(reg_rows)
        chosen_kind = chosen_row["candidate"]
        t0 = time.perf_counter()
        est = make_regressor(chosen_kind, chosen_row["params"], seed).fit(feats, y)
        timings["final_fit_s"] = round(time.perf_counter() - t0, 2)
        scalars, arrays = export_regressor(chosen_kind, est, feats, y)
        exported = ExportedRegressor(scalars, arrays)
        fitted_pred = est.predict(feats)
        roundtrip = float(np.max(np.abs(exported.predict(feats) - fitted_pred))) if len(feats) else 0.0
        if not roundtrip <= 1e-6 * max(1.0, float(np.max(np.abs(fitted_pred)))):
            raise RuntimeError(f"exported {chosen_kind} does not reproduce the fitted model (max diff {roundtrip:g})")
        extra = {"source": {"given": given, "path": transformer.source_path_, "sha256": transformer.source_sha256_},
                 "features": {"layers": transformer.layers_, "with_pa": bool(with_pa),
                              "names": transformer.feature_names_out_}}
        arrays = {**arrays, "feature_mask": transformer.mask_.astype(bool)}
        if transformer.pa_medians_ is not None:
            arrays["pa_medians"] = transformer.pa_medians_
        save_regressor(out, scalars, arrays, extra)
        metrics["val_mae"] = chosen_row["cv_mae"]
        reason = (_reason(reg_rows, chosen_row, "") if regressor == "auto"
                  else f"given (--regressor); hyper-parameters by CV MAE {chosen_row['cv_mae']:.4g}")
        reg_record = {"name": chosen_kind, "params": chosen_row["params"], "reason": reason,
                      "files": [REGRESSOR_JSON, REGRESSOR_NPZ], "format": FORMAT,
                      "serialization": "JSON scalars + npz arrays (allow_pickle=False); numpy predictions",
                      "roundtrip_max_abs_diff": roundtrip}
        if test_f is not None:
            t0 = time.perf_counter()
            test_raw = transformer.transform_all(test_f.fractions)
            test_pred = est.predict(test_raw[:, transformer.mask_])
            scores = regression_metrics(test_f.target, test_pred)
            metrics.update(test_mae=scores["mae"], test_rmse=scores["rmse"], test_r2=scores["r2"])
            write_table(_feature_frame(test_f, names_all, test_raw), out / TEST_FEATURES_FILE)
            write_table(pd.DataFrame({"line": test_f.frame["line"], "formula": test_f.frame["formula"],
                                      "target": test_f.target, "prediction": test_pred}), out / TEST_PREDICTIONS_FILE)
            timings["test_s"] = round(time.perf_counter() - t0, 2)
        predictor = FeatureModel(out, {}, transformer, exported)

    timings["total_s"] = round(time.perf_counter() - t_start, 2)
    cv_rows = layer_rows + reg_rows
    cv_text = describe_cv(len(x)) + f" (seed {seed})" if need_target else None
    data_records = {"train": _data_record(train)}
    if test_f is not None:
        data_records["test"] = _data_record(test_f)
    target_name = str(train.table.provenance.get("target") or train.table.target_col or "target")
    card = {
        **provenance(seed, str(dev)),
        "command_kind": COMMAND_KIND,
        "format": FORMAT,
        "source": {"given": given, "path": transformer.source_path_, "sha256": transformer.source_sha256_,
                   "arch": transformer.source_arch_, "pretrained_target": transformer.source_target_},
        "data": data_records,
        "target": {"name": target_name, "unit": str(train.table.provenance.get("unit", ""))} if has_target else None,
        "split": {"n_train": int(len(x)), "n_val": 0, "validation": cv_text or "none",
                  "n_test": test_f.n_kept if test_f is not None else 0},
        "features": {"layers": transformer.layers_, "with_pa": bool(with_pa), "n_columns": int(raw.shape[1]),
                     "n_used": int(feats.shape[1]), "dropped_constant": dropped, "file": FEATURES_FILE,
                     "computed": "float64 forward pass of the source network; PA NaN -> training median"},
        "selection": {
            "cv": cv_text,
            "layer": {"mode": "auto" if auto_layers else "given", "chosen": transformer.layers_,
                      "candidates": [r["candidate"] for r in layer_rows],
                      "probe": "ridge on the standardized activations alone (alpha chosen per layer from "
                               f"{len(RIDGE_ALPHAS)} values)" if auto_layers else None,
                      "reason": layer_reason},
            "regressor": {"mode": regressor, "chosen": chosen_kind,
                          "candidates": [r["candidate"] for r in reg_rows],
                          "reason": reg_record["reason"] if reg_record else None},
            "cv_table": cv_rows,
            "note": "the layer, regressor and hyper-parameters were chosen on the same folds that give val_mae, "
                    "so val_mae is slightly optimistic; test_mae (with --test) is not",
        },
        "regressor": reg_record,
        "metrics": metrics,
        "metrics_note": ("val_mae is the cross-validated MAE on the training data (" + describe_cv(len(x))
                         + "), not a hold-out; " + ("test metrics from the --test file" if test_f is not None
                                                    else "no --test file: test metrics are null"))
        if regressor != "none" else "no regressor (--regressor none): features only",
        "timing": timings,
    }
    write_json(out / CARD_FILE, card)
    if predictor is not None:
        predictor.card = card
    table = pd.DataFrame(cv_rows, columns=["stage", "candidate", "params", "cv_mae", "cv_mae_std", "n_configs",
                                           "seconds", "width", "varying_units"])
    return FeatureRunResult(out, card, list(transformer.layers_), chosen_kind, table, test_pred, predictor, timings)


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
