"""compare-scratch: transfer learning vs training from scratch, on one split, several seeds.

Methods (all see the same train/test rows for a given seed and training size):
  * ``tl-finetune``  fine-tune the pretrained ElemNet (strategy ``auto`` unless told);
  * ``tl-features``  pretrained activations + the best-validating scikit-learn regressor;
  * ``sc-ef``        ElemNet from scratch on element fractions;
  * ``sc-pa``        the same network from scratch on Magpie physical attributes;
  * ``pa-rf``        a random forest on physical attributes;
  * ``mean``         the training mean (the study's "base").
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .datasets import check_source, sha256_of
from .errors import InputError, plural
from .featurize import Featurized, check_several_compositions, held_out_record, load_and_prepare
from .io import jsonable, write_json, write_table, write_text
from .model import ElemNet
from .progress import console
from .report import NON_FINITE
from .runs import NO_TEST_METRICS, prepare_run_dir, provenance, refuse_both, refuse_non_directory, regression_metrics
from .training import FitConfig, fit, is_constant, member_seed, predict_tensor, resolve_device, standardize
from .transfer import fresh_network_config
from .workflow import split_indices, subset

METHODS = ("tl-finetune", "tl-features", "sc-ef", "sc-pa", "pa-rf", "mean")
SCRATCH_LR = 1e-3
"""From-scratch networks start at a larger learning rate than fine-tuning."""

STUDY_TEST_MAE = {
    # Gupta et al., Nat. Commun. 12, 6595 (2021): base, best from scratch, best transfer (EF)
    "slme": (9.439, 7.193, 6.42), "spillage": (0.501, 0.41, 0.373), "mbj_bandgap": (1.911, 0.555, 0.534),
    "bulkmoduluskv": (49.11, 11.83, 11.28), "meps": (4.905, 1.784, 1.776), "pseebeck": (163.3, 56.49, 60.25),
    "magmom_outcar": (1.176, 0.393, 0.376), "piezo_max_dij": (46.47, 26.46, 23.46),
}


@dataclass
class Split:
    """Training and test rows for one seed (and training size)."""

    train: Featurized
    test: Featurized
    seed: int
    size: float


@dataclass
class MethodOutcome:
    method: str
    seed: int
    size: float
    metrics: dict | None
    seconds: float
    error: str | None = None
    predictions: np.ndarray | None = None


# -- the methods ----------------------------------------------------------------------------------

def _scratch_net(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, *, arch: str, seed: int, device: str,
                 config: FitConfig, members: int) -> np.ndarray:
    """ElemNet from fresh weights on ``x_tr`` as given (sc-ef: the raw element fractions; sc-pa: physical
    attributes standardized by :func:`_pa`): the mean of ``members`` networks, each with its own seeded
    10 % validation hold-out (the same ensembling the fine-tuned models get) and the target standardized
    on its training rows. Every network trains at :data:`SCRATCH_LR` (not ``reinit``'s fine-tuning rate),
    with batch size and epochs sized from its rows as fine-tuning sizes them (``config``'s own when set),
    and stops as :func:`~elemnet_tl.transfer.fresh_network_config` says (the early stopping ``reinit``
    uses: at least 60 % of the epochs, then 40 % of them as patience)."""
    from .finetune import sized_config

    dev = resolve_device(device)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    preds = []
    for i in range(members):
        tr, va = split_indices(len(y_tr), 0.1, seed + 7919 * i)
        mean, std = standardize(y_tr[tr])
        cfg = fresh_network_config(sized_config(replace(config, lr=SCRATCH_LR, seed=member_seed(seed, i)), len(tr)))
        torch.manual_seed(member_seed(seed, i))
        model = ElemNet(arch, n_inputs=x_tr.shape[1])
        fit(model, t(x_tr[tr]), t((y_tr[tr] - mean) / std), t(x_tr[va]), t((y_tr[va] - mean) / std), cfg,
            device=dev, y_scale=std)
        preds.append(predict_tensor(model, t(x_te).to(dev)).cpu().numpy().astype(np.float64) * std + mean)
    return np.mean(preds, axis=0)


def _pa(train: Featurized, test: Featurized) -> tuple[np.ndarray, np.ndarray]:
    """Physical attributes, NaN filled with the training median, standardized on the training rows."""
    from .attributes import standardized_attributes

    train_pa, test_pa = standardized_attributes(train.fractions, test.fractions)
    return train_pa, test_pa


def target_name(data: Featurized) -> str:
    """The target's column name in the split files the transfer methods read (:attr:`Table.target_name`)."""
    name = data.table.target_name
    return name if name.lower() not in ("formula", "line") else "target"  # as a split file's column


def _write_split(split: Split, where: Path) -> tuple[Path, Path]:
    """``train.csv``, ``test.csv`` (formula and the target under its own name) for the transfer methods."""
    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, f in (("train", split.train), ("test", split.test)):
        path = where / f"{name}.csv"
        write_table(pd.DataFrame({"formula": f.frame["formula"], target_name(split.train): f.target}), path)
        paths.append(path)
    return paths[0], paths[1]


def record_test_score(where: Path, metrics: dict, n_test: int) -> None:
    """Write compare-scratch's score of a transfer run on its test rows into that run's card."""
    card_path = where / "card.json"
    if not card_path.is_file():
        return
    card = json.loads(card_path.read_text())
    card.setdefault("metrics", {}).update(test_mae=metrics["mae"], test_rmse=metrics["rmse"], test_r2=metrics["r2"])
    card.setdefault("split", {})["n_test"] = int(n_test)
    test_csv = where / "data" / "test.csv"  # the rows scored, beside the training rows the run read
    if test_csv.is_file() and isinstance(card.get("data"), dict):
        card["data"]["test"] = {"source": str(test_csv), "sha256": sha256_of(test_csv), "kept": int(n_test)}
    card["test_scored_by"] = "compare-scratch, on this seed's test rows (results.json)"
    if isinstance(card.get("metrics_note"), str):  # it said there were no test metrics
        card["metrics_note"] = card["metrics_note"].replace(
            NO_TEST_METRICS, "test metrics from compare-scratch, on this seed's test rows (results.json)")
    write_json(card_path, card)


def run_method(method: str, split: Split, where: Path, *, source: str, strategy: str, device: str,
               config: FitConfig, show_progress: bool, members: int = 3) -> np.ndarray:
    """Test-set predictions of one method on one split (run files kept under ``where``)."""
    from .workflow import MIN_TRAINING_ROWS

    y_tr = split.train.target
    if method == "mean":
        return np.full(split.test.n_kept, float(np.mean(y_tr)))
    if method in ("sc-ef", "sc-pa", "tl-finetune") and split.train.n_kept < MIN_TRAINING_ROWS:
        # each network holds out rows to validate on; the same floor as finetune's
        raise InputError(f"too few training rows for a network ({split.train.n_kept}; needs {MIN_TRAINING_ROWS})")
    if method == "sc-ef":
        return _scratch_net(split.train.fractions, y_tr, split.test.fractions, arch=_source_arch(source),
                            seed=split.seed, device=device, config=config, members=members)
    if method == "sc-pa":
        a, b = _pa(split.train, split.test)
        return _scratch_net(a, y_tr, b, arch=_source_arch(source), seed=split.seed, device=device, config=config,
                            members=members)
    if method == "pa-rf":
        from sklearn.ensemble import RandomForestRegressor

        from .regressors import scaled_target

        a, b = _pa(split.train, split.test)
        rf = scaled_target(RandomForestRegressor(n_estimators=300, min_samples_leaf=1, max_features=1 / 3, n_jobs=-1,
                                                 random_state=split.seed)).fit(a, y_tr)
        rf.regressor_.set_params(n_jobs=1)  # threads would sum the trees' predictions in any order: not bit-exact
        return rf.predict(b)
    train_csv, test_csv = _write_split(split, where / "data")
    if method == "tl-finetune":
        from .finetune import finetune
        from .predict import predict_fractions

        result = finetune(train_csv, where, source=source, strategy=strategy, duplicates="keep", members=members,
                          target_col=target_name(split.train),
                          config=replace(config, seed=split.seed), device=device, overwrite=True,
                          show_progress=show_progress)
        return predict_fractions(result.run_dir, split.test.fractions, device)
    if method == "tl-features":
        from .feature_runs import extract_features, load_feature_model
        from .regressors import MIN_CV_ROWS

        if split.train.n_kept < MIN_CV_ROWS:  # its regressor (and --from auto) are chosen by cross-validation
            raise InputError(f"too few training rows for cross-validation ({split.train.n_kept}; "
                             f"needs {MIN_CV_ROWS})")
        extract_features(train_csv, where, source=source, regressor="auto", seed=split.seed,
                         duplicates="keep", target_col=target_name(split.train), device=device,
                         show_progress=show_progress, overwrite=True)
        return load_feature_model(where).predict(split.test.fractions)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def fixed_source(source: str) -> str:
    """The model behind ``source``; ``auto`` (chosen per run from its data) means the default bundled one
    wherever one fixed model is needed (the scratch networks' architecture)."""
    from .sources import is_auto

    return "bundled" if is_auto(source) else source


def _source_arch(source: str) -> str:
    from .checkpoint import load_model

    return load_model(fixed_source(source)).info.arch


# -- the experiment -------------------------------------------------------------------------------

def seeded_test_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of seed ``seed``'s seeded test hold-out (when no test file is given)."""
    return split_indices(n, test_fraction, 1000 + seed)


def make_splits(data: Featurized, test: Featurized | None, seeds: int, sizes: list[float],
                test_fraction: float) -> list[Split]:
    """Per seed: the test set (file, or a seeded hold-out), then nested training subsets per size."""
    splits = []
    for seed in range(seeds):
        if test is None:
            tr_idx, te_idx = seeded_test_split(data.n_kept, test_fraction, seed)
            train, test_f = subset(data, tr_idx), subset(data, te_idx)
        else:
            train, test_f = data, test
        order = np.random.default_rng(2000 + seed).permutation(train.n_kept)
        for size in sizes:
            n = max(10, int(round(size * train.n_kept)))
            splits.append(Split(subset(train, np.sort(order[:n])), test_f, seed, size))
    return splits


def chosen_counts(out_dir: Path, key: str, dirs: list[Path] | None = None) -> dict[str, int]:
    """How often each value of the card entry ``key`` (``source_choice`` of ``--from auto``, ``strategy``
    of ``--strategy auto``) was picked in the tl-finetune runs under ``out_dir`` (only those in ``dirs``,
    this run's, when given)."""
    return _card_counts(out_dir, "tl-finetune", dirs, lambda card: (card.get(key) or {}).get("name"))


def sources_used(out_dir: Path, method: str, dirs: list[Path] | None = None) -> dict[str, int]:
    """How many ``method`` runs (tl-finetune or tl-features) started from each pretrained model, as their
    cards say: ``source_choice`` (``--from auto``), else the source recorded."""
    def source(card: dict) -> str | None:
        recorded = card.get("source_model") or card.get("source") or {}
        if isinstance(recorded, str):
            return recorded
        return (card.get("source_choice") or {}).get("name") or recorded.get("source") or recorded.get("given")

    return _card_counts(out_dir, method, dirs, source)


def _card_counts(out_dir: Path, method: str, dirs: list[Path] | None,
                 value: Callable[[dict], str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    cards = sorted((out_dir / "runs" / method).glob("*/seed*/card.json"))
    if dirs is not None:
        wanted = {Path(d) / "card.json" for d in dirs}
        cards = [c for c in cards if c in wanted]
    for card in cards:
        name = value(json.loads(card.read_text()))
        if name:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _outcome_path(out_dir: Path, method: str, split: Split) -> Path:
    size = f"size{split.size:g}" if split.size != 1.0 else "full"
    return out_dir / "runs" / method / size / f"seed{split.seed}"


RECORD_FILE = "comparison.json"
"""The data and options a comparison's results depend on, and the methods, seeds and sizes it covers
(written before the first method runs; ``--resume`` checks it)."""

OUTPUT_FILES = ("report.md", "results.json", "results.csv", "parity.png", "mae_bars.png", "learning_curve.png",
                "train.rejected.csv", "test.rejected.csv", "train.merged.csv", "test.merged.csv", RECORD_FILE)
"""What a comparison writes at the top of its output directory (besides ``runs/<method>/``)."""

NEEDS_MODEL = ("tl-finetune", "tl-features", "sc-ef", "sc-pa")
"""Methods that read the pretrained model (its weights, or its architecture for the scratch networks)."""


def _sizes_argument(value: object) -> list[float] | None:
    """``train_sizes`` as the API may get it: None, a number, ``"0.25,1"`` as --train-sizes takes it, or numbers."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, (int, float)) else value
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        raise InputError(f"--train-sizes must be fractions such as 0.25,0.5,1, got {value!r}") from None


def check_sizes_distinct(sizes: list[float]) -> None:
    """:class:`InputError` when two training sizes print alike (the report, results.json and the run folders
    name them by ``f"{size:g}"``), also when a --resume adds one to the saved sizes."""
    shown = [f"{s:g}" for s in sizes]
    if len(set(shown)) < len(shown):
        raise InputError("--train-sizes: " + ", ".join(f"{s!r}" for s in sizes) + " name the same fraction at 6 "
                         "digits; give distinct fractions")


def check_options(methods: tuple[str, ...], seeds: int, train_sizes: list[float] | None, test_fraction: float,
                  has_test: bool, source: str, strategy: str, members: int, device: str) -> list[float]:
    """Every option checked before anything is loaded or trained (:class:`InputError`, one line);
    returns the sorted training sizes (1.0 always among them)."""
    from .checkpoint import load_start_network, resolve_model_path
    from .sources import is_auto
    from .transfer import parse_strategy

    if not methods:
        raise InputError(f"--methods: no method given; choose from {', '.join(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise InputError(f"--methods: {', '.join(repeated)} given more than once")
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    if members < 1:
        raise InputError(f"--ensemble must be at least 1, got {members}")
    sizes = sorted(set(train_sizes or [1.0]))
    if any(not 0 < s <= 1 for s in sizes):
        raise InputError("--train-sizes must be fractions in (0, 1], got " + ",".join(f"{s:g}" for s in sizes))
    if 1.0 not in sizes:
        sizes.append(1.0)
    check_sizes_distinct(sizes)
    if not has_test and not 0 < test_fraction < 1:
        raise InputError(f"--test-fraction must be between 0 and 1 (both excluded), got {test_fraction:g}")
    resolve_device(device)
    # the checks finetune makes: --from names a readable model, --strategy parses for its layers
    n_layers = 17
    if any(m in NEEDS_MODEL for m in methods):
        n_layers = len(load_start_network(fixed_source(source))[0].layer_names)
    elif not is_auto(source):
        resolve_model_path(source)
    try:
        parse_strategy(strategy, n_layers)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return sizes


def check_output_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an output that is a file, or a folder already holding a comparison (unless ``resume`` or
    ``overwrite``)."""
    refuse_both(resume, overwrite)
    refuse_non_directory(out_dir)
    if not out_dir.is_dir() or resume or overwrite:
        return
    held = [f for f in OUTPUT_FILES if (out_dir / f).exists()] + [
        f"runs/{m}" for m in METHODS if (out_dir / "runs" / m).exists()]
    if held:
        raise InputError(f"{out_dir}: already holds a comparison ({', '.join(held[:3])}"
                         f"{', ...' if len(held) > 3 else ''}); pass --overwrite to replace it or --resume to "
                         "continue it")


def clear_output_dir(out_dir: Path, keep: tuple[str, ...] = ()) -> None:
    """``--overwrite``: remove an earlier comparison's files and method runs (nothing else in the folder, and
    none of ``keep``, the files it reads)."""
    import shutil

    kept = {Path(p).resolve() for p in keep if p}
    for f in OUTPUT_FILES:
        if (out_dir / f).resolve() not in kept:
            (out_dir / f).unlink(missing_ok=True)
    for m in METHODS:
        shutil.rmtree(out_dir / "runs" / m, ignore_errors=True)


RESULT_OPTIONS = {"data_sha256": "the data", "columns": "--formula-col/--target-col",
                  "duplicates": "the duplicate rule", "test": "--test/--test-fraction", "source": "--from",
                  "strategy": "--strategy", "members": "--ensemble", "config": "--epochs",
                  "attribute_scaling": "the scaling of physical attributes (an earlier elemtl's)",
                  "stability_col": "--stability-col"}
"""Record entries that change a method's result (they must match to ``--resume``), with their option names."""

ATTRIBUTE_SCALING = "z-scores within the training range widened by itself"
"""How sc-pa's inputs are scaled (:func:`~elemnet_tl.attributes.standardized_attributes`); a record without the
entry was made with unbounded z-scores."""
RECORD_DEFAULTS = {"attribute_scaling": "unbounded z-scores", "stability_col": None}
"""What a saved record that lacks an entry (an earlier elemtl's) had."""

NETWORKS = ("tl-finetune", "sc-ef", "sc-pa")
OPTION_METHODS = {"source": NEEDS_MODEL, "strategy": ("tl-finetune",), "members": NETWORKS, "config": NETWORKS,
                  "attribute_scaling": ("sc-pa",)}
"""The methods whose results an option changes (the others change every method's)."""


def comparison_record(full: Featurized, test_f: Featurized | None, test_fraction: float, *, source: str,
                      strategy: str, members: int, config: FitConfig, methods: tuple[str, ...], seeds: int,
                      sizes: list[float], stability_col: str | None = None) -> dict:
    """The comparison's :data:`RECORD_FILE`: its :data:`RESULT_OPTIONS` and what it covers."""
    from dataclasses import asdict

    held_out = {"fraction": test_fraction} if test_f is None else {"sha256": test_f.table.provenance.get("sha256")}
    record = {"data_sha256": full.table.provenance.get("sha256"),
              "columns": [full.table.formula_col, full.table.target_col], "duplicates": full.rule,
              "test": held_out, "source": source, "strategy": strategy, "members": members,
              "config": asdict(config), "methods": list(methods), "seeds": seeds, "train_sizes": sizes,
              "attribute_scaling": ATTRIBUTE_SCALING, "stability_col": stability_col}
    return jsonable(record)


def _saved_record(out_dir: Path) -> dict | None:
    """The saved comparison's record; for one made before :data:`RECORD_FILE` existed, what its
    results.json says (data hash, options, scope); None when there is neither."""
    if (out_dir / RECORD_FILE).is_file():
        return json.loads((out_dir / RECORD_FILE).read_text())
    if not (out_dir / "results.json").is_file():
        return None
    setup = json.loads((out_dir / "results.json").read_text()).get("setup") or {}
    legacy = {"data_sha256": (setup.get("data") or {}).get("sha256"), "source": setup.get("source"),
              "strategy": setup.get("strategy"), "members": setup.get("members"), "methods": setup.get("methods"),
              "seeds": setup.get("seeds"), "train_sizes": setup.get("train_sizes")}
    return {k: v for k, v in legacy.items() if v is not None}


def resumed_record(out_dir: Path, record: dict) -> dict:
    """``--resume``: refuse (:class:`InputError`) a saved comparison made with other data or options;
    else ``record`` widened to cover the saved methods, seeds and sizes too (finished results are kept)."""
    saved = _saved_record(out_dir)
    if saved is None:
        return record

    def matters(key: str) -> bool:
        return any(m in OPTION_METHODS.get(key, METHODS) for m in saved.get("methods", METHODS))

    saved = {**{k: v for k, v in RECORD_DEFAULTS.items() if k in RESULT_OPTIONS}, **saved}
    differ = [name for key, name in RESULT_OPTIONS.items()
              if key in saved and saved[key] != record.get(key, RECORD_DEFAULTS.get(key)) and matters(key)]
    if differ:
        verb = "differs" if len(differ) == 1 else "differ"
        raise InputError(f"{out_dir}: --resume with different data or options than the saved comparison "
                         f"({', '.join(differ)} {verb}); pass --overwrite to replace it, or choose another --output")
    return {**record, "methods": list(dict.fromkeys([*saved.get("methods", []), *record["methods"]])),
            "seeds": max(saved.get("seeds", 0), record["seeds"]),
            "train_sizes": sorted({*saved.get("train_sizes", []), *record["train_sizes"]})}




def finite_predictions(pred: np.ndarray | None, metrics: dict | None = None) -> bool:
    """Whether every test prediction (when known) and the MAE/RMSE (when given) are finite numbers."""
    if pred is not None and not np.all(np.isfinite(np.asarray(pred, dtype=np.float64))):
        return False
    return all(isinstance(v, (int, float)) and np.isfinite(v) for k, v in (metrics or {}).items()
               if k in ("mae", "rmse"))


def _saved_outcomes(out_dir: Path, splits: list[Split], methods: list[str]) -> dict[tuple, MethodOutcome]:
    """``--resume``: the results saved in ``out_dir`` for these method/split pairs, by (method, seed, size);
    :class:`InputError` when one does not fit this data's test rows (nothing is written before)."""
    found = {}
    for split in splits:
        for method in methods:
            done = _outcome_path(out_dir, method, split) / "result.json"
            if not done.is_file():
                continue
            saved = json.loads(done.read_text())
            pred = saved.pop("predictions", None)
            if pred is not None and len(pred) != split.test.n_kept:
                raise InputError(f"{done}: {len(pred)} test predictions for {split.test.n_kept} test rows: --resume "
                                 "with different data or options than the saved comparison; pass --overwrite to "
                                 "replace it")
            outcome = MethodOutcome(**saved, predictions=None if pred is None else np.asarray(pred, dtype=np.float64))
            if outcome.metrics is not None and not finite_predictions(outcome.predictions, outcome.metrics):
                # saved by a version that scored non-finite predictions: a failure, as it is now
                outcome = replace(outcome, metrics=None, predictions=None, error=NON_FINITE)
            found[(method, split.seed, split.size)] = outcome
    return found


def _rejection_notes(out_dir: Path, full: Featurized, test_f: Featurized | None) -> tuple[list[str], dict]:
    """Write ``train.rejected.csv`` / ``test.rejected.csv`` (line, formula, reason) in ``out_dir`` as the
    training commands do; returns the console lines and, per input, its count and file."""
    from .workflow import TrainingInputs, write_rejections

    empty = np.array([], dtype=int)
    records = {"train": full.record(), **({"test": test_f.record()} if test_f is not None else {})}
    notes = write_rejections(out_dir, TrainingInputs(full, None, test_f, empty, empty, records=records))
    files = {}
    for name, f in (("train", full), ("test", test_f)):
        if f is not None and f.n_rejected:
            files[name] = {"rows": f.n_rejected, "file": f"{name}.rejected.csv"}
    return notes, files


def compare_scratch(
    data: str | Path = "expt-formation-enthalpy",
    out_dir: str | Path = "results",
    *,
    test: str | Path | None = None,
    methods: tuple[str, ...] | str = METHODS,
    seeds: int = 3,
    train_sizes: list[float] | None = None,
    test_fraction: float = 0.2,
    source: str = "auto",
    strategy: str = "auto",
    members: int = 3,
    config: FitConfig | None = None,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    formula_col: str | None = None,
    target_col: str | None = None,
    duplicates: str = "auto",
    stability_col: str | None = None,
    show_progress: bool = True,
    on_result: Callable[[MethodOutcome], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> dict:
    """Run every method on the same split(s) and write results.json/csv, report.md and plots to ``out_dir``.

    Every option is checked first (:class:`InputError`); an output folder already holding a comparison
    is refused unless ``resume`` or ``overwrite``. ``resume`` refuses other data or options than the saved
    comparison's and keeps every finished method/seed pair, those not asked for again too
    (:func:`resumed_record`). Rejected input rows go to ``train.rejected.csv`` / ``test.rejected.csv`` in
    ``out_dir``; each such file, and a guessed target column, gets a line passed to ``on_note`` (default:
    printed when ``show_progress``).
    A method that fails is recorded (``results["failed"]``), not raised. ``methods``: names, or one
    comma-separated string as ``--methods`` takes it.
    """
    from .finetune import FINETUNE_DEFAULTS

    for name, value in (("data", data), ("test", test)):
        check_source(value, name)
    methods = tuple(m.strip() for m in methods.split(",")) if isinstance(methods, str) else tuple(methods)
    train_sizes = _sizes_argument(train_sizes)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)):
        raise InputError(f"--seeds must be a whole number, got {seeds!r}")
    sizes = check_options(methods, seeds, train_sizes, test_fraction, test is not None, source, strategy, members,
                          device)
    config = config or FINETUNE_DEFAULTS
    out_dir = Path(out_dir)
    check_output_dir(out_dir, resume=resume, overwrite=overwrite)
    full = load_and_prepare(data, formula_col, target_col, duplicates, stability_col)
    check_several_compositions(full)
    test_f = load_and_prepare(test, formula_col, target_col, "keep", like=full) if test else None
    record = comparison_record(full, test_f, test_fraction, source=source, strategy=strategy, members=members,
                               config=config, methods=methods, seeds=seeds, sizes=sizes, stability_col=stability_col)
    if resume:
        record = resumed_record(out_dir, record)
        check_sizes_distinct(record["train_sizes"])
    all_methods = record["methods"]
    splits = make_splits(full, test_f, record["seeds"], record["train_sizes"], test_fraction)
    smallest = min(s.train.n_kept for s in splits)
    if smallest < 2 or min(s.test.n_kept for s in splits) < 1:
        raise InputError(f"{data}: {full.n_read} rows read, {full.n_rejected} rejected, {full.n_merged} merged as "
                         f"duplicates: {plural(full.n_kept, 'usable row')}, "
                         f"{plural(smallest, 'training row')}"
                         f"{'' if test else f' after the {test_fraction:g} test hold-out'}"
                         "; compare-scratch needs at least 2 to train on and 1 to test on")
    from .workflow import MIN_TRAINING_ROWS

    networks = [m for m in all_methods if m in ("sc-ef", "sc-pa", "tl-finetune")]
    if networks and smallest < MIN_TRAINING_ROWS:  # they could only fail, after the others trained
        raise InputError(f"{data}: {plural(smallest, 'training row')}; {', '.join(networks)} need at least "
                         f"{MIN_TRAINING_ROWS} (each network holds out rows to validate on): give more data, or "
                         "leave them out with --methods")
    saved_outcomes = _saved_outcomes(out_dir, splits, all_methods) if resume else {}
    read = tuple(str(f.table.provenance.get("path", "")) for f in (full, test_f) if f is not None)
    if overwrite and not resume:
        clear_output_dir(out_dir, keep=read)
    prepare_run_dir(out_dir, resume, overwrite, inputs=read)  # creates it (one-line error when it cannot)
    write_json(out_dir / RECORD_FILE, record)
    notes, rejected_files = _rejection_notes(out_dir, full, test_f)
    for note in notes:
        if on_note is not None:
            on_note(note)
        elif show_progress:
            console.print(note, highlight=False, markup=False)
    outcomes: list[MethodOutcome] = []
    for split in splits:
        for method in all_methods:
            requested = method in methods and split.seed < seeds and split.size in sizes
            kept = saved_outcomes.get((method, split.seed, split.size))
            if kept is not None and (kept.metrics is not None or not requested):  # asked-for failures: again
                outcomes.append(kept)
                continue
            if not requested:
                continue
            where = _outcome_path(out_dir, method, split)
            t0 = time.perf_counter()
            try:
                pred = np.asarray(run_method(method, split, where, source=source, strategy=strategy, device=device,
                                             config=config, show_progress=False, members=members), dtype=np.float64)
                if not finite_predictions(pred):  # a NaN MAE would rank by the order of the methods
                    bad = int(np.size(pred) - np.isfinite(pred).sum())
                    raise InputError(f"{NON_FINITE} ({bad} of {np.size(pred)} test rows NaN or infinite)")
                metrics = regression_metrics(split.test.target, pred)
                if method in ("tl-finetune", "tl-features"):
                    record_test_score(where, metrics, split.test.n_kept)
                outcome = MethodOutcome(method, split.seed, split.size, metrics, time.perf_counter() - t0,
                                        predictions=pred)
            except Exception as exc:  # one failing method must not lose the others
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                (where).mkdir(parents=True, exist_ok=True)
                write_text(where / "error.txt", traceback.format_exc())
                error = reason if isinstance(exc, InputError) else f"{type(exc).__name__}: {reason}"
                outcome = MethodOutcome(method, split.seed, split.size, None, time.perf_counter() - t0, error=error)
            write_json(where / "result.json", {
                "method": outcome.method, "seed": outcome.seed, "size": outcome.size, "metrics": outcome.metrics,
                "seconds": outcome.seconds, "error": outcome.error,
                "predictions": None if outcome.predictions is None else outcome.predictions.tolist()})
            outcomes.append(outcome)
            if on_result is not None:
                on_result(outcome)
            elif show_progress:
                msg = (f"MAE {outcome.metrics['mae']:.4g}" if outcome.metrics else f"failed: {outcome.error}")
                console.print(f"{method:12s} seed {split.seed} size {split.size:g}: {msg} ({outcome.seconds:.0f} s)",
                              highlight=False)
    from .report import write_report

    if test_f is not None:
        split_words = (f"test file {test} ({plural(test_f.n_read, 'row')} read, {test_f.n_rejected} rejected, "
                       f"{test_f.n_kept} scored: every kept row, duplicates too)")
    else:
        split_words = (f"seeded {test_fraction:g} hold-out per seed ({splits[0].test.n_kept} test rows), "
                       "a different split for each seed")
    run_dirs = {m: [_outcome_path(out_dir, m, s) for s in splits] for m in all_methods}
    setup = {
        "data": {**{k: v for k, v in full.table.provenance.items() if k in ("source", "sha256", "name", "unit")},
                 **full.counts()},
        "test_data": None if test_f is None else {**held_out_record(test_f, full), "source": str(test)},
        "rejected_files": rejected_files,
        "split": split_words,
        "n_test": splits[0].test.n_kept,
        "seeds": record["seeds"], "train_sizes": record["train_sizes"], "methods": all_methods, "source": source,
        "sources_used": {m: sources_used(out_dir, m, run_dirs[m]) for m in all_methods
                         if m in ("tl-finetune", "tl-features")},
        "strategy": strategy,
        "strategies_chosen": chosen_counts(out_dir, "strategy", run_dirs.get("tl-finetune", [])),
        "members": members,
        "n_train": splits[-1].train.n_kept if splits else 0,
        "unit": str(full.table.provenance.get("unit", "")),
        "target": target_name(full),
        "target_constant": is_constant(full.target),
        "provenance": provenance(None, str(resolve_device(device))),
    }
    study = study_key(full.table.source, test)
    setup["study_split"] = same_study_split(full.table.source, test, study)
    return write_report(out_dir, outcomes, splits, setup, study)


def study_key(data: str, test: str | Path | None) -> str | None:
    """The study's property name when the data (or the --test file) is one of its JARVIS sets. It names
    the study's figures only: whether the split is the study's too is :func:`same_study_split`."""
    for part in Path(str(data)).parts + (Path(str(test)).parts if test else ()):
        if part in STUDY_TEST_MAE:
            return part
    return None


def same_study_split(data: str, test: str | Path | None, key: str | None) -> bool:
    """Whether the comparison scores the study's own split: a --test file given, and both it and the data
    in the study's folder for property ``key``. Without --test the test rows are a seeded hold-out of the
    data, not the study's test set, and its figures are for orientation only."""
    if key is None or not test:
        return False
    return key in Path(str(data)).parts and key in Path(str(test)).parts
