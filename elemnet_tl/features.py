"""The pretrained network as a feature extractor for scikit-learn regressors.

:class:`PretrainedFeatures` turns element fractions into the activations of chosen layers of a
pretrained ElemNet (optionally with Magpie physical attributes). :func:`extract_features` chooses the
layer and a regressor by cross-validation on the training data, fits the regressor, and writes a
directory that ``elemtl predict --model DIR`` can use (:func:`is_feature_run`,
:func:`load_feature_model`).

The directory is self-contained: a bundled source is recorded by name (it ships with the package); any
other source's layers that the features need (``fc1`` up to the deepest chosen layer, plus the
physical-attribute input when the network has one) are saved in it as ``source_network.safetensors``
(weights and metadata only, no pickle; :func:`save_feature_network`), and predictions load from there.
The original source's path stays in ``card.json`` for provenance only.

The regressors, their cross-validation and their pickle-free saving live in :mod:`elemnet_tl.regressors`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from .checkpoint import (
    BUNDLED_DIR,
    BUNDLED_MODELS,
    CARD_FILE,
    FRACTIONS,
    FRACTIONS_AND_ATTRIBUTES,
    MODEL_FILE,
    STATE_FILE,
    input_kind,
    load_model,
    read_weights,
)
from .datasets import sha256_of
from .elements import ELEMENTS, N_ELEMENTS
from .errors import InputError
from .io import atomic_path, write_json, write_table
from .model import ElemNet, ElemNetEnsemble
from .regressors import (
    FORMAT,
    REGRESSOR_JSON,
    REGRESSOR_NPZ,
    REGRESSORS,
    RIDGE_ALPHAS,
    SVR_AUTO_MAX_ROWS,
    ExportedRegressor,
    best_row,
    choice_reason,
    cv_folds,
    cv_regressor,
    cv_row,
    describe_cv,
    export_regressor,
    format_params,
    load_regressor_files,
    make_regressor,
    ridge_cv,
    save_regressor,
)

if TYPE_CHECKING:
    from .featurize import Featurized

COMMAND_KIND = "extract-features"
FEATURES_FILE = "features.parquet"
TEST_FEATURES_FILE = "test_features.parquet"
TEST_PREDICTIONS_FILE = "test_predictions.csv"
NETWORK_FILE = "source_network.safetensors"
"""The part of a non-bundled source network the features need, saved in the extraction directory."""
NETWORK_FORMAT = "elemnet_tl/feature-network/1"
"""safetensors metadata ``format`` of :data:`NETWORK_FILE` (not a full model: ``load_model`` refuses it)."""
OUTPUT_FILES = (CARD_FILE, FEATURES_FILE, TEST_FEATURES_FILE, TEST_PREDICTIONS_FILE, REGRESSOR_JSON, REGRESSOR_NPZ,
                NETWORK_FILE, "train.rejected.csv", "test.rejected.csv")
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


def parse_layers(spec: str | list[str] | tuple[str, ...], model: ElemNet) -> list[str] | None:
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
    from safetensors.torch import save_file

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
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
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


def _check_fractions(x: Any) -> np.ndarray:
    """``x`` as a finite float64 (n, 86) fraction matrix, else :class:`InputError`."""
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

    def _network(self) -> ElemNet:
        """The source network, loaded on first use."""
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
        """The candidate layer with the lowest ridge-probe CV MAE (rows go to ``cv_table_``)."""
        candidates = candidate_layers(self._net)
        folds = cv_folds(len(x), self.seed)
        acts = self.activations(x, candidates)
        for name in candidates:
            t0 = time.perf_counter()
            a = acts[name]
            a = a[:, np.ptp(a, axis=0) > 0] if len(a) else a
            maes = ridge_cv(a, y, folds)
            best = int(np.argmin(maes.mean(axis=0)))
            row = cv_row("layer", name, {"probe": "ridge", "alpha": RIDGE_ALPHAS[best]}, maes[:, best],
                       time.perf_counter() - t0, len(RIDGE_ALPHAS))
            row["width"] = layer_width(self._net, name)
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
        return self._raw(_check_fractions(X))

    def transform(self, X: Any) -> np.ndarray:
        """The kept feature columns (``feature_names_out_``), float64."""
        return self.transform_all(X)[:, self.mask_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``feature_names_out_`` as an object array (scikit-learn API)."""
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
        """Pickled without the network (reloaded from ``source`` on first use)."""
        state = self.__dict__.copy()
        state.pop("_net", None)
        return state


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
    """Reload a feature run: its saved source network (:data:`NETWORK_FILE`; or the bundled model named
    in the card; or, for directories written before the network was saved in them, the source path in
    the card), checked by sha256, and the regressor.

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
    stored = src.get("stored")
    if stored:  # the layers the features need, saved in the directory
        load_from = out_dir / str(stored.get("file") or NETWORK_FILE)
        if not load_from.is_file():
            raise InputError(f"{out_dir}: {load_from.name} (the source network's layers the features need) "
                             "is missing")
        digest = sha256_of(load_from)
        if stored.get("sha256") and digest != stored["sha256"]:
            raise InputError(f"{load_from}: contents differ from what {CARD_FILE} records (sha256 "
                             f"{digest[:12]}..., card says {stored['sha256'][:12]}...)")
    else:  # a bundled source by name, or a directory written before the network was saved in it
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
        load_from = given
    feats = meta.get("features") or {}
    features = PretrainedFeatures.restore(str(load_from), feats.get("layers") or [], bool(feats.get("with_pa")),
                                          arrays.pop("feature_mask"), arrays.pop("pa_medians", None), device)
    if features.feature_names_out_ != list(feats.get("names") or []):
        raise InputError(f"{out_dir}: saved feature names do not match the source network's layers")
    regressor = ExportedRegressor(meta["regressor"], arrays)
    if not regressor.accepts(len(features.feature_names_out_)):
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


def _feature_frame(featurized: Featurized, names: list[str], values: np.ndarray) -> pd.DataFrame:
    """formula, target (when present) and one column per feature."""
    cols: dict[str, Any] = {"formula": featurized.frame["formula"].to_numpy()}
    if "target" in featurized.frame:
        cols["target"] = featurized.frame["target"].to_numpy(dtype=np.float64)
    return pd.concat([pd.DataFrame(cols), pd.DataFrame(values, columns=names)], axis=1)


def _source_given(source: str | Path) -> str:
    """``bundled[:name]`` as given, a path made absolute (recorded in the card)."""
    text = str(source).strip()
    if is_bundled(text):
        return text
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"--from {text}: no such file or directory; give {FROM_VALUES}")
    return str(path.resolve())


def _source_path_record(transformer: PretrainedFeatures) -> str:
    """Where the source weights were, for provenance: inside the package for a bundled model (the same on
    every machine), else the absolute path."""
    path = Path(transformer.source_path_).resolve()
    if is_bundled(transformer.source):
        try:
            return str(Path("elemnet_tl") / path.relative_to(BUNDLED_DIR.parent))
        except ValueError:
            pass
    return str(path)


def _probe_mae(transformer: PretrainedFeatures, x: np.ndarray, y: np.ndarray, folds: Any) -> float:
    """CV MAE of a ridge probe on a fitted transformer's activations (its best layer's, with layers=auto)."""
    if transformer.cv_table_:
        return float(best_row(transformer.cv_table_)["cv_mae"])
    acts = transformer.activations(x, transformer.layers_)
    a = np.concatenate([acts[n] for n in transformer.layers_], axis=1)
    a = a[:, np.ptp(a, axis=0) > 0] if len(a) else a
    if a.shape[1] == 0:
        return float("inf")
    return float(ridge_cv(a, y, folds).mean(axis=0).min())


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
    training data), a layer name or ``"fc4,fc7"``. ``source``: ``bundled``, ``bundled:NAME``, a run
    directory, a ``.safetensors`` file, or ``auto``: the bundled model whose chosen layer(s) a ridge probe
    predicts best in the same cross-validation (card: ``source_choice``). ``regressor``: ``auto`` (the one
    of rf, gbr, ridge, svr, knn with the lowest CV MAE), one of them (its hyper-parameters still chosen by
    CV) or ``none`` (features only). ``test`` is scored once at the end (never deduplicated).

    Writes ``features.parquet`` (formula, target, one column per unit), ``card.json`` (metrics:
    ``val_mae`` = CV MAE on the training data), ``regressor.json`` + ``regressor.npz`` and, with a test
    file, ``test_features.parquet`` and ``test_predictions.csv``. With a regressor and a source that is not
    bundled, the layers the features need are saved as ``source_network.safetensors`` (so the directory
    keeps working when the source moves); a bundled source is recorded by name.
    """
    from .featurize import load_and_prepare, overlap_warning, target_warning, write_rejected
    from .progress import console
    from .runs import prepare_run_dir, provenance, regression_metrics
    from .sources import bundled_sources, is_auto
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

    auto_source = is_auto(source)
    givens = bundled_sources() if auto_source else [_source_given(source)]
    need_target = regressor != "none" or auto_layers or auto_source
    train = load_and_prepare(data, formula_col, target_col, duplicates, require_target=need_target)
    has_target = train.table.has_target
    test_f = load_and_prepare(test, formula_col, target_col, "keep") if test is not None else None
    candidates = [PretrainedFeatures(source=g, layers=layers, with_pa=with_pa, seed=seed, device=str(dev))
                  for g in givens]
    for candidate in candidates:
        candidate._load_network()  # a bad source fails before the output directory is touched
        parse_layers(layers, candidate._net)
    transformer, given = candidates[0], givens[0]
    x = train.fractions
    y = train.target if has_target else None
    if need_target:
        folds = cv_folds(len(x), seed)  # fails early on too few rows

    target_dir = Path(out_dir)
    if any(target_dir.resolve() == Path(c.source_path_).resolve().parent for c in candidates):
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
    if target_warning(train):
        say(target_warning(train))
    if test_f is not None:
        say("test file " + test_f.summary())
        if overlap_warning(test_f, train):
            say(overlap_warning(test_f, train))

    source_choice = None
    if auto_source:
        t0 = time.perf_counter()
        scores: dict[str, float] = {}
        for g, candidate in zip(givens, candidates):
            say(f"--from auto: probing {g} ...")
            candidate.fit(x, y)
            scores[g] = _probe_mae(candidate, x, y, folds)
            say(f"  {g}: ridge-probe CV MAE {scores[g]:.4g} (layer {','.join(candidate.layers_)})")
        given = min(scores, key=scores.__getitem__)
        transformer = candidates[givens.index(given)]
        candidates = [transformer]  # the other networks are not needed any more
        ranked = ", ".join(f"{s} {v:.4g}" for s, v in sorted(scores.items(), key=lambda kv: kv[1]))
        source_choice = {"name": given, "reason": "lowest ridge-probe CV MAE of the chosen layer(s) of each "
                                                  f"bundled model: {ranked}", "probe": scores}
        say(f"--from auto: {given} — {source_choice['reason']}")
        timings["source_selection_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    if auto_layers and not auto_source:
        say(f"choosing a layer: ridge probe, {describe_cv(len(x))} ...")
    if not auto_source:  # with --from auto, fitted while choosing the source
        transformer.fit(x, y)
    for row in transformer.cv_table_:
        say(f"  {row['candidate']}: CV MAE {row['cv_mae']:.4g} ({row['varying_units']} varying units)")
    timings["layer_selection_s"] = round(time.perf_counter() - t0, 2)
    layer_rows = list(transformer.cv_table_)
    source_record = {"given": given, "path": _source_path_record(transformer), "sha256": transformer.source_sha256_,
                     "arch": transformer.source_arch_, "pretrained_target": transformer.source_target_}
    if transformer.source_members_ > 1:
        source_record["ensemble"] = f"features from the first of its {transformer.source_members_} members"
    source_record["card"] = transformer.source_card_
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
    layer_reason = (choice_reason(layer_rows, best_row(layer_rows), "ridge probe") if auto_layers
                    else "given (--layers)")

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
            say(f"  {kind}: CV MAE {row['cv_mae']:.4g} ({format_params(row['params'])}; {row['seconds']:.1f} s)")
        timings["regressor_selection_s"] = round(time.perf_counter() - t0, 2)
        chosen_row = best_row(reg_rows)
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
        if not is_bundled(given):  # the directory must not depend on the source staying where it is
            saved_layers = save_feature_network(out / NETWORK_FILE, transformer._net, transformer.layers_,
                                                source_record, transformer._dtypes)
            source_record["stored"] = {
                "file": NETWORK_FILE, "layers": saved_layers, "attributes": transformer._net.attributes is not None,
                "sha256": sha256_of(out / NETWORK_FILE), "bytes": (out / NETWORK_FILE).stat().st_size,
                "note": "the source network's layers the features need (fc1 up to the deepest chosen layer, "
                        "plus the physical-attribute input if it has one); predict loads them from here"}
        extra = {"source": source_record,
                 "features": {"layers": transformer.layers_, "with_pa": bool(with_pa),
                              "names": transformer.feature_names_out_}}
        arrays = {**arrays, "feature_mask": transformer.mask_.astype(bool)}
        if transformer.pa_medians_ is not None:
            arrays["pa_medians"] = transformer.pa_medians_
        save_regressor(out, scalars, arrays, extra)
        metrics["val_mae"] = chosen_row["cv_mae"]
        reason = (choice_reason(reg_rows, chosen_row, "") if regressor == "auto"
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
    data_records = {"train": train.record()}
    if test_f is not None:
        data_records["test"] = test_f.record()
    target_name = str(train.table.provenance.get("target") or train.table.target_col or "target")
    card = {
        **provenance(seed, str(dev)),
        "command_kind": COMMAND_KIND,
        "format": FORMAT,
        "source": source_record,
        **({"source_choice": source_choice} if source_choice else {}),
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
