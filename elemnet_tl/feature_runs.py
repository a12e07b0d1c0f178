"""``extract-features`` run directories: :func:`extract_features` writes one (features, the regressor
chosen by cross-validation, its card), :func:`load_feature_model` reloads it for ``elemtl predict``.

The directory is self-contained: a bundled source is recorded by name (it ships with the package); any
other source's layers that the features need are saved in it as ``source_network.safetensors``
(:func:`~elemnet_tl.features.save_feature_network`), and predictions load from there. The original
source's path stays in ``card.json`` for provenance only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .checkpoint import BUNDLED_DIR, CARD_FILE, MODEL_FILE, STATE_FILE
from .datasets import check_source, run_folder, sha256_of
from .elements import element_rows
from .errors import InputError, plural
from .features import (
    COMMAND_KIND,
    FEATURES_FILE,
    FROM_VALUES,
    NETWORK_FILE,
    OUTPUT_FILES,
    TEST_FEATURES_FILE,
    TEST_PREDICTIONS_FILE,
    PretrainedFeatures,
    check_fractions,
    is_bundled,
    parse_layers,
    save_feature_network,
)
from .io import write_json, write_table
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
    describe_cv,
    export_regressor,
    format_params,
    load_regressor_files,
    make_regressor,
    mean_cv_mae,
    save_regressor,
)

if TYPE_CHECKING:
    from .featurize import Featurized

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
        x = check_fractions(fractions)
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
    try:
        return _load_feature_model(out_dir, device)
    except InputError:
        raise
    except (KeyError, AttributeError, TypeError, ValueError) as exc:  # a record edited by hand or cut short
        raise InputError(f"{out_dir}: incomplete or corrupted feature run ({type(exc).__name__}: "
                         f"{str(exc)[:80]}); extract the features again") from None


def _load_feature_model(out_dir: Path, device: str) -> FeatureModel:
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


def extract_features(
    data: str | Path,
    out_dir: str | Path,
    *,
    source: str | Path = "auto",
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
    notices: bool | None = None,
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
    ``show_progress``: print the steps and cross-validation rows; ``notices``: print the data summary,
    rejected-row files, warnings and the source choice (default: ``show_progress``).
    """
    from .featurize import check_several_compositions, held_out_record, load_and_prepare
    from .runs import NO_TEST_METRICS, provenance
    from .sources import bundled_sources, choose_source, is_auto
    from .training import MAX_SEED, SEED_RULE, resolve_device

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    source = run_folder(source)  # a finetune/pretrain result: its run directory
    check_source(source, "source", "'auto', 'bundled', 'bundled:NAME' or a run directory")
    regressor = str(regressor).strip().lower()
    if regressor not in ("auto", "none", *REGRESSORS):
        raise InputError(f"--regressor {regressor!r}: choose from auto, {', '.join(REGRESSORS)}, none")
    for name, value in (("data", data), ("test", test)):
        check_source(value, name)
    auto_layers = isinstance(layers, str) and layers.strip().lower() == "auto"
    if test is not None and regressor == "none":
        raise InputError("--test needs a regressor to score (not --regressor none)")
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be {SEED_RULE}, got {seed}")
    dev = resolve_device(device)
    say = _sayer(show_progress)
    note = _sayer(show_progress if notices is None else notices)

    need_target = regressor != "none" or auto_layers
    train = load_and_prepare(data, formula_col, target_col, duplicates, require_target=need_target)
    if need_target:
        check_several_compositions(train)
    has_target = train.table.has_target
    auto_source = is_auto(source) and has_target  # without a target, auto is the default bundled model
    givens = bundled_sources() if auto_source else [bundled_sources()[0] if is_auto(source) else _source_given(source)]
    need_target = need_target or auto_source
    test_f = load_and_prepare(test, formula_col, target_col, "keep", like=train) if test is not None else None
    candidates = [PretrainedFeatures(source=g, layers=layers, with_pa=with_pa, seed=seed, device=str(dev))
                  for g in givens]
    for candidate in candidates:
        parse_layers(layers, candidate.network)  # a bad source fails before the output directory is touched
    x = train.fractions
    y = train.target if has_target else None
    folds = cv_folds(len(x), seed) if need_target else None  # fails early on too few rows
    read = tuple(str(f.table.provenance.get("path", "")) for f in (train, test_f) if f is not None)
    out = _prepare_out_dir(Path(out_dir), candidates, overwrite, inputs=read)
    _report_inputs(out, train, test_f, note)

    source_choice = None
    if auto_source:
        t0 = time.perf_counter()
        say(f"--from auto: probing {', '.join(givens)} ...")
        given, source_choice, fitted_sources = choose_source(x, y, seed, str(dev), layers, max_rows=None,
                                                             transformers=candidates)
        # nothing probed (a constant target, too few rows): the chosen source is fitted below
        transformer = fitted_sources.get(given) or candidates[givens.index(given)]
        note(f"--from auto: {given} — {source_choice['reason']}")
        timings["source_selection_s"] = round(time.perf_counter() - t0, 2)
    else:
        transformer, given, fitted_sources = candidates[0], givens[0], {}
    t0 = time.perf_counter()
    if auto_layers and not auto_source:
        say(f"choosing a layer: ridge probe, {describe_cv(len(x))} ...")
    if given not in fitted_sources:  # with --from auto, fitted while choosing the source
        transformer.fit(x, y)
        if transformer.source_members_ > 1:
            note(f"{given}: an ensemble of {transformer.source_members_} networks; the features are its first's")
    for row in transformer.cv_table_:
        say(f"  {row['candidate']}: CV MAE {row['cv_mae']:.4g} ({row['varying_units']} varying units)")
    timings["layer_selection_s"] = round(time.perf_counter() - t0, 2)
    layer_rows = list(transformer.cv_table_)
    source_record = _source_record(transformer, given)
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

    fitted, baseline = None, None
    metrics = {"val_mae": None, "test_mae": None, "test_rmse": None, "test_r2": None}
    if regressor != "none":
        fitted = _fit_regressor(regressor, feats, y, folds, seed, say, timings)
        _save_regressor(out, fitted, transformer, given, source_record, with_pa)
        metrics["val_mae"] = fitted.row["cv_mae"]
        baseline = mean_cv_mae(y, folds)
        if baseline > 0 and not fitted.row["cv_mae"] < baseline:  # 0: a constant target, warned about already
            note(f"warning: the CV MAE of {fitted.kind} ({fitted.row['cv_mae']:.4g}) is no better than predicting the "
                f"training mean ({baseline:.4g} on the same folds): these features did not learn this target; "
                "try other --layers or finetune")
        if test_f is not None:
            t0 = time.perf_counter()
            metrics.update(_score_test(out, fitted, transformer, test_f))
            timings["test_s"] = round(time.perf_counter() - t0, 2)

    timings["total_s"] = round(time.perf_counter() - t_start, 2)
    reg_rows = fitted.rows if fitted else []
    cv_rows = layer_rows + reg_rows
    cv_text = describe_cv(len(x)) + f" (seed {seed})" if need_target else None
    data_records = {"train": {**train.record(), "element_rows": element_rows(train.fractions)}}
    if test_f is not None:
        data_records["test"] = held_out_record(test_f, train)
    target_name = train.table.target_name
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
            "regressor": {"mode": regressor, "chosen": fitted.kind if fitted else "none",
                          "candidates": [r["candidate"] for r in reg_rows],
                          "reason": fitted.record["reason"] if fitted else None},
            "cv_table": cv_rows,
            "cv_mae_of_training_mean": baseline,
            "note": "the layer, regressor and hyper-parameters were chosen on the same folds that give val_mae, "
                    "so val_mae is slightly optimistic; test_mae (with --test) is not; cv_mae_std is the "
                    "population standard deviation (ddof 0) of the fold MAEs",
        },
        "regressor": fitted.record if fitted else None,
        "metrics": metrics,
        "metrics_note": ("val_mae is the cross-validated MAE on the training data (" + describe_cv(len(x))
                         + "), not a hold-out; " + ("test metrics from the --test file" if test_f is not None
                                                    else NO_TEST_METRICS))
        if regressor != "none" else "no regressor (--regressor none): features only",
        "timing": timings,
    }
    write_json(out / CARD_FILE, card)
    predictor = FeatureModel(out, card, transformer, fitted.exported) if fitted else None
    table = pd.DataFrame(cv_rows, columns=["stage", "candidate", "params", "cv_mae", "cv_mae_std", "n_configs",
                                           "seconds", "width", "varying_units"])
    return FeatureRunResult(out, card, list(transformer.layers_), fitted.kind if fitted else "none", table,
                            fitted.test_pred if fitted else None, predictor, timings)


def _sayer(show: bool):
    """A print function that prints only when ``show``."""
    from .progress import console

    def say(text: str) -> None:
        if show:
            console.print(text, highlight=False, soft_wrap=True)
    return say


def _prepare_out_dir(target_dir: Path, candidates: list[PretrainedFeatures], overwrite: bool,
                     inputs: tuple[str, ...] = ()) -> Path:
    """The output directory, refused when it is a source's own directory or already holds a run (unless
    ``overwrite``, which removes the files of a previous extraction, never one of ``inputs``)."""
    from .runs import prepare_run_dir

    if any(target_dir.resolve() == Path(c.source_path_).resolve().parent for c in candidates):
        raise InputError(f"{target_dir}: is the source network's directory; write the features elsewhere")
    if not overwrite and target_dir.is_dir() and any(
            (target_dir / f).exists() for f in (CARD_FILE, FEATURES_FILE, MODEL_FILE, STATE_FILE)):
        raise InputError(f"{target_dir}: already holds an extraction or a run; pass --overwrite to replace it")
    out = prepare_run_dir(target_dir, resume=False, overwrite=overwrite, inputs=inputs)
    if overwrite:
        kept = {Path(p).resolve() for p in inputs if p}
        for name in OUTPUT_FILES:
            if (out / name).resolve() not in kept:
                (out / name).unlink(missing_ok=True)
    return out


def _report_inputs(out: Path, train: Featurized, test_f: Featurized | None, say) -> None:
    """Rejected-row files, the data summaries and the warnings about the inputs."""
    from .featurize import input_warnings, merged_note, write_merged, write_rejected

    for name, f in (("train", train), ("test", test_f)):
        if f is not None and write_rejected(f, out / f"{name}.rejected.csv") is not None:
            say(f"{plural(f.n_rejected, 'rejected row')} of {f.table.source} listed in {out / f'{name}.rejected.csv'}")
        merged = write_merged(f, out / f"{name}.rejected.csv") if f is not None else None
        if merged is not None:
            say(merged_note(f, merged))
    say(train.summary())
    for warning in input_warnings(train):
        say(warning)
    if test_f is not None:
        say("test file " + test_f.summary())
        for warning in input_warnings(test_f, train):
            say(warning)


def _source_record(transformer: PretrainedFeatures, given: str) -> dict:
    """The card's ``source``: what was given, where it was, its sha256, architecture and target."""
    record = {"given": given, "path": _source_path_record(transformer), "sha256": transformer.source_sha256_,
              "arch": transformer.source_arch_, "pretrained_target": transformer.source_target_}
    if transformer.source_members_ > 1:
        record["ensemble"] = f"features from the first of its {transformer.source_members_} members"
    record["card"] = transformer.source_card_
    return record


@dataclass
class _Fitted:
    """The regressor chosen by cross-validation, fitted on every training row."""

    kind: str
    row: dict
    rows: list[dict]
    estimator: Any
    exported: ExportedRegressor
    scalars: dict
    arrays: dict
    record: dict
    test_pred: np.ndarray | None = None


def check_export(kind: str, estimator: Any, exported: ExportedRegressor, feats: np.ndarray, y: np.ndarray) -> float:
    """The largest difference between ``exported`` and the fitted ``estimator`` on its training rows;
    ``RuntimeError`` unless it is rounding (1e-6 of the target's spread or of the largest prediction).

    On its own training rows a distance-weighted kNN divides by self-distances that are rounding noise
    (~1e-7, computed differently by scikit-learn and numpy), so its neighbours are checked with uniform
    weights; rows whose k-th and next neighbours are equally far (repeated feature rows) are left out:
    either neighbour is right, and the two implementations may keep different ones."""
    rows = np.arange(len(feats))
    if kind == "knn":
        if exported.scalars.get("weights") == "distance":
            estimator = clone(estimator).set_params(model__weights="uniform").fit(feats, y)
            exported = ExportedRegressor({**exported.scalars, "weights": "uniform"}, exported.arrays)
        k = int(exported.scalars["n_neighbors"])
        if k < len(feats):
            scaled = estimator.named_steps["scale"].transform(feats)
            dist, _ = estimator.named_steps["model"].kneighbors(scaled, n_neighbors=k + 1)
            rows = np.flatnonzero(dist[:, k] - dist[:, k - 1] > 1e-9 * (1.0 + dist[:, k]))
    if not len(rows):
        return 0.0
    fitted_pred = estimator.predict(feats[rows])
    roundtrip = float(np.max(np.abs(exported.predict(feats[rows]) - fitted_pred)))
    scale = max(float(np.std(y)), float(np.max(np.abs(fitted_pred))))
    if not roundtrip <= 1e-6 * scale:
        raise RuntimeError(f"exported {kind} does not reproduce the fitted model (max diff {roundtrip:g})")
    return roundtrip


def _fit_regressor(regressor: str, feats: np.ndarray, y: np.ndarray, folds: Any, seed: int, say,
                   timings: dict) -> _Fitted:
    """Cross-validate the candidate regressors (``auto``: all; else the one given), fit the best on all
    rows and export it (checked to reproduce the fitted model's predictions)."""
    kinds = REGRESSORS if regressor == "auto" else (regressor,)
    if regressor == "auto" and len(feats) > SVR_AUTO_MAX_ROWS:
        kinds = tuple(k for k in kinds if k != "svr")
        say(f"svr left out: more than {SVR_AUTO_MAX_ROWS} training rows (ask for it with --regressor svr)")
    t0 = time.perf_counter()
    rows = []
    for kind in kinds:
        say(f"cross-validating {kind} ...")
        row = cv_regressor(kind, feats, y, folds, seed)
        rows.append(row)
        say(f"  {kind}: CV MAE {row['cv_mae']:.4g} ({format_params(row['params'])}; {row['seconds']:.1f} s)")
    timings["regressor_selection_s"] = round(time.perf_counter() - t0, 2)
    row = best_row(rows)
    kind = row["candidate"]
    t0 = time.perf_counter()
    est = make_regressor(kind, row["params"], seed).fit(feats, y)
    timings["final_fit_s"] = round(time.perf_counter() - t0, 2)
    scalars, arrays = export_regressor(kind, est, feats, y)
    exported = ExportedRegressor(scalars, arrays)
    roundtrip = check_export(kind, est, exported, feats, y)
    settings = (f"hyper-parameters chosen among {row['n_configs']} settings" if row["n_configs"] > 1
                else "its one setting")
    reason = (choice_reason(rows, row, "") if regressor == "auto"
              else f"given (--regressor); {settings}: CV MAE {row['cv_mae']:.4g}")
    record = {"name": kind, "params": row["params"], "reason": reason,
              "files": [REGRESSOR_JSON, REGRESSOR_NPZ], "format": FORMAT,
              "serialization": "JSON scalars + npz arrays (allow_pickle=False); numpy predictions",
              "roundtrip_max_abs_diff": roundtrip}
    return _Fitted(kind, row, rows, est, exported, scalars, arrays, record)


def _save_regressor(out: Path, fitted: _Fitted, transformer: PretrainedFeatures, given: str, source_record: dict,
                    with_pa: bool) -> None:
    """Write the regressor files, and the source network's layers the features need when the source is
    not bundled (the directory must not depend on the source staying where it is; ``source_record``
    gains ``stored``)."""
    if not is_bundled(given):
        saved_layers = save_feature_network(out / NETWORK_FILE, transformer.network, transformer.layers_,
                                            source_record, transformer.stored_dtypes)
        source_record["stored"] = {
            "file": NETWORK_FILE, "layers": saved_layers, "attributes": transformer.network.attributes is not None,
            "sha256": sha256_of(out / NETWORK_FILE), "bytes": (out / NETWORK_FILE).stat().st_size,
            "note": "the source network's layers the features need (fc1 up to the deepest chosen layer, "
                    "plus the physical-attribute input if it has one); predict loads them from here"}
    extra = {"source": source_record,
             "features": {"layers": transformer.layers_, "with_pa": bool(with_pa),
                          "names": transformer.feature_names_out_}}
    arrays = {**fitted.arrays, "feature_mask": transformer.mask_.astype(bool)}
    if transformer.pa_medians_ is not None:
        arrays["pa_medians"] = transformer.pa_medians_
    save_regressor(out, fitted.scalars, arrays, extra)


def _score_test(out: Path, fitted: _Fitted, transformer: PretrainedFeatures, test_f: Featurized) -> dict:
    """Score the test file once: its features and predictions are written beside the run; returns the
    test metrics (and keeps the predictions in ``fitted.test_pred``)."""
    from .featurize import test_predictions_frame
    from .runs import regression_metrics

    test_raw = transformer.transform_all(test_f.fractions)
    fitted.test_pred = fitted.exported.predict(test_raw[:, transformer.mask_])  # exactly what predict will give
    scores = regression_metrics(test_f.target, fitted.test_pred)
    write_table(_feature_frame(test_f, transformer.feature_names_all_, test_raw), out / TEST_FEATURES_FILE)
    write_table(test_predictions_frame(test_f, fitted.test_pred), out / TEST_PREDICTIONS_FILE)
    return {"test_mae": scores["mae"], "test_rmse": scores["rmse"], "test_r2": scores["r2"]}
