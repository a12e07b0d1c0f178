"""The pretrained network as a feature extractor for scikit-learn regressors.

:class:`PretrainedFeatures` turns element fractions into the activations of chosen layers of a
pretrained ElemNet (optionally with Magpie physical attributes); :func:`save_feature_network` keeps the
layers the features need (``fc1`` up to the deepest chosen layer, plus the physical-attribute input when
the network has one; weights and metadata only, no pickle). The ``extract-features`` command and its run
directories are in :mod:`elemnet_tl.feature_runs`.

The regressors, their cross-validation and their pickle-free saving live in :mod:`elemnet_tl.regressors`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from .attributes import complete_state
from .checkpoint import (
    BUNDLED_MODELS,
    CARD_FILE,
    FRACTIONS,
    FRACTIONS_AND_ATTRIBUTES,
    input_kind,
    load_model,
    read_weights,
    write_safetensors,
)
from .datasets import sha256_of
from .elements import ELEMENTS, N_ELEMENTS
from .errors import InputError
from .model import ElemNet, ElemNetEnsemble
from .regressors import (
    REGRESSOR_JSON,
    REGRESSOR_NPZ,
    RIDGE_ALPHAS,
    best_row,
    cv_folds,
    cv_row,
    ridge_cv,
)

COMMAND_KIND = "extract-features"
FEATURES_FILE = "features.parquet"
TEST_FEATURES_FILE = "test_features.parquet"
TEST_PREDICTIONS_FILE = "test_predictions.csv"
NETWORK_FILE = "source_network.safetensors"
"""The part of a non-bundled source network the features need, saved in the extraction directory."""
NETWORK_FORMAT = "elemnet_tl/feature-network/1"
"""safetensors metadata ``format`` of :data:`NETWORK_FILE` (not a full model: ``load_model`` refuses it)."""
OUTPUT_FILES = (CARD_FILE, FEATURES_FILE, TEST_FEATURES_FILE, TEST_PREDICTIONS_FILE, REGRESSOR_JSON, REGRESSOR_NPZ,
                NETWORK_FILE, "train.rejected.csv", "test.rejected.csv", "train.merged.csv", "test.merged.csv")
FROM_VALUES = ("auto, bundled (= bundled:formation-energy), bundled:NAME ("
               + ", ".join(BUNDLED_MODELS) + "), a run directory or a .safetensors file")
"""What ``--from`` accepts (error messages)."""
MAX_CANDIDATE_LAYERS = 6
BATCH = 4096
"""Rows per forward pass."""


# --------------------------------------------------------------------------------------------- layers


def candidate_layers(model: ElemNet) -> list[str]:
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


def parse_layers(spec: str | int | list[str | int] | tuple[str | int, ...], model: ElemNet) -> list[str] | None:
    """``"auto"`` -> None; ``"fc4,fc7"``, ``"4,7"`` (hidden layer numbers), an int or a list -> validated layer
    names in forward order."""
    if isinstance(spec, str):
        if spec.strip().lower() == "auto":
            return None
        names = [s.strip() for s in spec.split(",") if s.strip()]
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        names = [str(spec)]
    elif isinstance(spec, (list, tuple)):
        names = [str(s).strip() for s in spec]
        if [n.lower() for n in names] == ["auto"]:
            return None
    else:
        raise InputError(f"--layers: give 'auto', layer numbers such as 4 or 4,7, or names such as fc4; got {spec!r}")
    if any(n.lower() == "auto" for n in names) and len(names) > 1:
        raise InputError(f"--layers {','.join(names)}: 'auto' chooses one layer by validation; give it alone")
    names = [f"fc{int(n)}" if n.isdecimal() and n.isascii() else n for n in names]  # 4 -> fc4
    if not names:
        raise InputError("--layers: give 'auto', layer numbers such as 4 or 4,7, or names such as fc4")
    unknown = [n for n in names if n not in model.layer_names]
    if unknown:
        raise InputError(f"--layers {','.join(unknown)}: no such layer in this network "
                         f"(layers: {model.layer_names[0]} ... {model.layer_names[-2]}, out)")
    order = {name: i for i, name in enumerate(model.layer_names)}
    return sorted(dict.fromkeys(names), key=order.__getitem__)


def layer_width(model: ElemNet, name: str) -> int:
    """Number of units of layer ``name``."""
    return int(model.layers[name].out_features)


def layer_feature_names(model: ElemNet, layers: list[str], with_pa: bool) -> list[str]:
    """``fc4_0000`` ... per unit of each layer, then the ``pa_*`` columns."""
    names = [f"{layer}_{i:04d}" for layer in layers for i in range(layer_width(model, layer))]
    if with_pa:
        from .physical import feature_labels

        names += feature_labels()
    return names


# --------------------------------------------------------------------------------------------- saved network


def is_bundled(source: str | Path) -> bool:
    """``bundled`` or ``bundled:NAME`` (a model shipped with the package, recorded by name)."""
    text = str(source)
    return text == "bundled" or text.startswith("bundled:")


def is_network_file(path: str | Path) -> bool:
    """True when ``path`` is a file written by :func:`save_feature_network`."""
    from safetensors import safe_open

    p = Path(str(path))
    if not p.is_file():
        return False
    try:
        with safe_open(str(p), framework="pt") as fh:
            return (fh.metadata() or {}).get("format") == NETWORK_FORMAT
    except Exception:  # not a safetensors file
        return False


def needed_layers(model: ElemNet, layers: list[str]) -> list[str]:
    """``fc1`` ... the deepest of ``layers`` (what a forward pass to them goes through)."""
    names = model.layer_names
    return names[:max(names.index(n) for n in layers) + 1]


def save_feature_network(path: str | Path, model: ElemNet, layers: list[str], source: dict,
                         dtypes: dict[str, torch.dtype] | None = None) -> list[str]:
    """Write the layers the features of ``layers`` need (``fc1`` up to the deepest one, plus the
    physical-attribute input when the network has one) as safetensors, atomically; returns the saved
    layer names. ``source`` (JSON: where the network came from, its architecture and card) goes into
    the metadata; ``dtypes`` maps state-dict keys to the dtype to store (the source file's)."""
    keep = needed_layers(model, layers)
    tensors = {}
    for key, value in model.state_dict().items():
        part = key.split(".")
        if part[0] == "layers" and part[1] not in keep:
            continue
        dtype = (dtypes or {}).get(key, value.dtype)
        tensors[key] = value.detach().to("cpu", dtype).contiguous()
    meta = {"format": NETWORK_FORMAT, "arch": model.arch, "dropout": repr(model.dropout),
            "inputs": input_kind(model), "elements": " ".join(ELEMENTS), "layers": " ".join(keep),
            "source": json.dumps(source)}
    write_safetensors(path, tensors, meta)
    return keep


def load_feature_network(path: str | Path) -> tuple[ElemNet, dict]:
    """The truncated network :func:`save_feature_network` wrote (float32, eval mode; only the saved layers
    exist) and its ``source`` record. Raises :class:`InputError` (one line) on a corrupted or foreign file."""
    p = Path(str(path))
    meta, tensors = read_weights(p, NETWORK_FORMAT, "a saved feature network")
    try:
        inputs = meta["inputs"]
        if inputs not in (FRACTIONS, FRACTIONS_AND_ATTRIBUTES):
            raise ValueError(f"unknown inputs {inputs!r}")
        model = ElemNet(meta["arch"], dropout=float(meta["dropout"]), attributes=inputs == FRACTIONS_AND_ATTRIBUTES)
        keep = meta["layers"].split()
        source = json.loads(meta.get("source") or "{}")
        if not keep or keep != model.layer_names[:len(keep)]:
            raise ValueError(f"saved layers {keep} are not the first layers of {meta['arch']!r}")
    except (KeyError, ValueError) as exc:
        raise InputError(f"{p}: bad network metadata: {exc}") from None
    for name in model.layer_names[len(keep):]:
        del model.layers[name]  # never computed: a forward pass to them fails instead of using random weights
    tensors = complete_state(tensors, model.state_dict())
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise InputError(f"{p}: weights do not match layers {keep[0]}..{keep[-1]} of {meta['arch']!r} "
                         f"(first differences: {diff})")
    if not all(torch.isfinite(v).all() for v in tensors.values()):
        raise InputError(f"{p}: weights contain NaN or infinite values")
    model.load_state_dict(tensors)
    model.eval()
    return model, source


# --------------------------------------------------------------------------------------------- transformer


FRACTION_SUM_TOLERANCE = 5e-3
"""How far a row of fractions may sum from 1 (fractions rounded to 3 decimals: 0.333 x 3 = 0.999)."""


def check_fractions(x: Any) -> np.ndarray:
    """``x`` as a finite float64 (n, 86) fraction matrix, else :class:`InputError`."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):  # formulas or a table given where fractions are expected
        raise InputError(f"fractions must be numbers, an (n, {N_ELEMENTS}) matrix; formulas become fractions "
                         "with elemnet_tl.featurize or load_and_prepare(...).fractions") from None
    if arr.ndim != 2 or arr.shape[1] != N_ELEMENTS:
        raise InputError(f"fractions must have shape (n, {N_ELEMENTS}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError("fractions contain NaN or infinite values")
    negative = np.argwhere(arr < 0)
    if len(negative):
        row, col = negative[0]
        raise InputError(f"fractions must be non-negative: row {row} has {arr[row, col]:g} for {ELEMENTS[col]}")
    sums = arr.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > FRACTION_SUM_TOLERANCE)
    if len(off):
        raise InputError(f"fractions must sum to 1 per row (row {off[0]} sums to {sums[off[0]]:.6g}): divide amounts "
                         "by their sum (Fe2O3: Fe 0.4, O 0.6), or use elemnet_tl.compositions.parse_formulas(...): "
                         "its .fractions rows where .ok is True")
    return arr


class PretrainedFeatures(TransformerMixin, BaseEstimator):
    """Activations of layers of a pretrained ElemNet as features (scikit-learn transformer).

    Parameters
    ----------
    source : ``"bundled"``, ``"bundled:NAME"``, a run directory, a ``.safetensors`` model or a network saved
        by :func:`save_feature_network` (an ensemble's first member gives the features).
    layers : ``"auto"`` (needs ``y`` in :meth:`fit`: the candidate layer whose standardized activations
        a ridge probe predicts best in cross-validation), a layer name, ``"fc4,fc7"`` or a list.
    with_pa : append Magpie physical attributes (NaN -> training median).
    drop_constant : leave out columns constant on the training data (dead ReLU units).
    seed : seeds the CV folds of ``layers="auto"``.
    device : ``auto``, ``cpu`` or ``cuda`` for the forward pass (float64).

    Fitted attributes: ``layers_``, ``feature_names_all_``, ``mask_`` (kept columns),
    ``feature_names_out_``, ``pa_medians_`` (or None), ``source_path_``, ``source_sha256_``,
    ``source_arch_``, ``source_card_`` (the source's card, abridged), ``cv_table_`` (layer probe rows;
    empty unless auto), ``n_features_in_``.
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
        """Load the source network (float64, eval mode) and record its path, sha256 and architecture."""
        from .training import resolve_device

        dev = resolve_device(self.device)
        if is_network_file(self.source):
            net, record = load_feature_network(self.source)
            path = Path(str(self.source))
            self.source_arch_ = net.arch
            self.source_target_ = record.get("pretrained_target") or {}
            self.source_card_ = record.get("card") or {}
            self.source_members_ = 1
        else:
            loaded = load_model(self.source, "cpu")
            net, path = loaded.model, loaded.path
            self.source_members_ = len(net.members) if isinstance(net, ElemNetEnsemble) else 1
            if isinstance(net, ElemNetEnsemble):
                net = net.first  # an ensemble's layers and activations are its first member's
            self.source_arch_ = loaded.info.arch
            self.source_target_ = {"name": loaded.info.target, "unit": loaded.info.unit}
            self.source_card_ = {k: loaded.card[k] for k in ("command_kind", "created", "target", "model",
                                                              "metrics") if k in loaded.card}
        self._dtypes = {k: v.dtype for k, v in net.state_dict().items()}  # as stored (float32 weights)
        net = net.double().to(dev)
        net.eval()
        self._net = net
        self._net_key = (str(self.source), str(self.device))
        self.source_path_ = str(path)
        self.source_sha256_ = sha256_of(path)

    @property
    def network(self) -> ElemNet:
        """The source network (float64, eval mode), loaded on first use: a bad source fails here."""
        if getattr(self, "_net", None) is None or self._net_key != (str(self.source), str(self.device)):
            self._load_network()
        return self._net

    @property
    def stored_dtypes(self) -> dict[str, torch.dtype]:
        """The source network's parameter dtypes as stored (its weights are float32 on disk)."""
        _ = self.network  # loads it
        return self._dtypes

    def activations(self, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
        """Float64 activations of ``layers`` for fractions ``x`` (batched forward pass)."""
        net = self.network
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
        x = check_fractions(X)
        net = self.network
        chosen = parse_layers(self.layers, net)
        self.cv_table_: list[dict] = []
        self.layer_fold_maes_: dict[str, np.ndarray] = {}
        if chosen is None:
            if y is None:
                raise InputError("layers='auto' chooses the layer by cross-validation: fit needs targets y")
            y_arr = np.asarray(y, dtype=np.float64).ravel()
            if len(y_arr) != len(x):
                raise InputError(f"{len(x)} rows of fractions but {len(y_arr)} targets")
            if not np.isfinite(y_arr).all():
                raise InputError(f"{int((~np.isfinite(y_arr)).sum())} of {len(y_arr)} targets are NaN or infinite: "
                                 "the layer is chosen by cross-validated error on them")
            chosen = [self._choose_layer(x, y_arr)]
        self.layers_ = chosen
        self.feature_names_all_ = layer_feature_names(net, chosen, self.with_pa)
        self.pa_medians_ = None
        raw = self._raw(x, fitting=True)
        self.mask_ = (np.ptp(raw, axis=0) > 0) if (self.drop_constant and len(raw)) else np.ones(raw.shape[1], bool)
        self.feature_names_out_ = [n for n, keep in zip(self.feature_names_all_, self.mask_) if keep]
        self.n_features_in_ = N_ELEMENTS
        self._record_fit()
        return self

    def _record_fit(self) -> None:
        """What the fitted columns depend on: the source (and its file's sha256) and ``with_pa``."""
        self.fitted_on_ = {"source": str(self.source), "with_pa": bool(self.with_pa),
                           "sha256": self.source_sha256_}

    def _choose_layer(self, x: np.ndarray, y: np.ndarray) -> str:
        """The candidate layer with the lowest ridge-probe CV MAE (rows go to ``cv_table_``, each layer's
        per-fold MAE at its best penalty to ``layer_fold_maes_``)."""
        candidates = candidate_layers(self.network)
        folds = cv_folds(len(x), self.seed)
        acts = self.activations(x, candidates)
        for name in candidates:
            t0 = time.perf_counter()
            a = acts[name]
            a = a[:, np.ptp(a, axis=0) > 0] if len(a) else a
            maes = ridge_cv(a, y, folds)
            best = int(np.argmin(maes.mean(axis=0)))
            self.layer_fold_maes_[name] = maes[:, best]
            row = cv_row("layer", name, {"probe": "ridge", "alpha": RIDGE_ALPHAS[best]}, maes[:, best],
                       time.perf_counter() - t0, len(RIDGE_ALPHAS))
            row["width"] = layer_width(self.network, name)
            row["varying_units"] = int(a.shape[1])
            self.cv_table_.append(row)
        return best_row(self.cv_table_)["candidate"]

    def _raw(self, x: np.ndarray, fitting: bool = False) -> np.ndarray:
        """Activations of ``layers_`` (+ imputed PA; ``fitting`` records the PA medians), every column."""
        acts = self.activations(x, self.layers_)
        blocks = [acts[name] for name in self.layers_]
        if self.with_pa:
            from .physical import feature_labels, imputation_medians, impute, physical_attributes

            pa = physical_attributes(x) if len(x) else np.zeros((0, len(feature_labels())))
            if fitting:
                self.pa_medians_ = imputation_medians(pa)
            blocks.append(impute(pa, self.pa_medians_))
        return np.concatenate(blocks, axis=1)

    def transform_all(self, X: Any) -> np.ndarray:
        """Every column of the chosen layers (constant ones included), PA imputed."""
        self._check_fitted()
        return self._raw(check_fractions(X))

    def transform(self, X: Any) -> np.ndarray:
        """The kept feature columns (``feature_names_out_``), float64."""
        return self.transform_all(X)[:, self.mask_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``feature_names_out_`` as an object array (scikit-learn API)."""
        self._check_fitted()
        return np.asarray(self.feature_names_out_, dtype=object)

    def _check_fitted(self) -> None:
        """Fitted, and still on what it was fitted on: ``set_params(source=/with_pa=)`` after ``fit``, or a
        pickled transformer whose source file changed since, would give columns the mask does not fit."""
        from sklearn.exceptions import NotFittedError

        if not hasattr(self, "mask_"):
            raise NotFittedError("PretrainedFeatures is not fitted yet: call fit first")
        fitted = getattr(self, "fitted_on_", None)
        if fitted is None:
            return
        if (str(self.source), bool(self.with_pa)) != (fitted["source"], fitted["with_pa"]):
            raise NotFittedError(f"PretrainedFeatures was fitted with source={fitted['source']!r}, "
                                 f"with_pa={fitted['with_pa']}: call fit again after set_params")
        _ = self.network  # (re)loads the source, recording its sha256
        if fitted["sha256"] and self.source_sha256_ != fitted["sha256"]:
            raise InputError(f"{self.source_path_}: the source network changed since this transformer was "
                             f"fitted (sha256 {self.source_sha256_[:12]}..., fitted on {fitted['sha256'][:12]}...)")

    @classmethod
    def restore(cls, source: str, layers: list[str], with_pa: bool, mask: np.ndarray,
                pa_medians: np.ndarray | None, device: str = "cpu") -> PretrainedFeatures:
        """A fitted transformer from saved state (the source network is loaded on first use)."""
        self = cls(source=source, layers=list(layers), with_pa=with_pa, device=device)
        self.layers_ = list(layers)
        self.feature_names_all_ = layer_feature_names(self.network, self.layers_, with_pa)
        if len(mask) != len(self.feature_names_all_):
            raise InputError(f"saved feature mask has {len(mask)} columns but layers {layers} give "
                             f"{len(self.feature_names_all_)}")
        self.mask_ = np.asarray(mask, dtype=bool)
        self.pa_medians_ = None if pa_medians is None else np.asarray(pa_medians, dtype=np.float64)
        self.feature_names_out_ = [n for n, keep in zip(self.feature_names_all_, self.mask_) if keep]
        self.cv_table_ = []
        self.n_features_in_ = N_ELEMENTS
        self._record_fit()
        return self

    def __getstate__(self) -> dict:
        """Pickled without the network (reloaded from ``source`` on first use)."""
        state = self.__dict__.copy()
        state.pop("_net", None)
        return state
