"""Fine-tune a pretrained ElemNet on a small target property."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CARD_FILE, load_start_network
from .datasets import check_source, run_folder
from .errors import InputError
from .io import write_json
from .runs import check_run_dir
from .sources import choose_source, is_auto, probe_source
from .training import FitConfig, is_constant, predict_tensor, resolve_device, standardize
from .transfer import Strategy, parse_strategy, strategy_phases
from .workflow import RunResult, TrainingInputs, load_training_inputs, run_training

FINETUNE_DEFAULTS = FitConfig(epochs=0, batch_size=0, lr=0, weight_decay=1e-4, warmup=0.05, final_lr=0.01,
                              patience=20, seed=0)
"""epochs=0 and batch_size=0 mean "from the data size" (:func:`sized_config`), lr=0 "from the start of
the network" (:func:`default_lr`)."""

FAR_LR = 2e-3
"""Peak learning rate of a fine-tune from the pretrained weights with a new output layer when the source
is far from the target (its first layer's features predict the target best): the features must move."""

NEAR_LR = 3e-4
"""Peak learning rate of a fine-tune from a source close to the target: its calibrated output layer kept
(the same property), or its deeper features predicting the target better than its first layer's (a
related property); a smaller step keeps the network near the source. Also the rate of networks from
fresh weights (``reinit``)."""

FRESH_REASON = "fresh weights"
"""Why a network from fresh weights (``reinit``) trains at :data:`NEAR_LR` (cards, summary line)."""

DEFAULT_MEMBERS = 3
"""Fine-tuned models averaged into the final ensemble (each on its own validation split)."""

STEP_BUDGET = 2000
"""Optimizer steps per fine-tune when epochs are chosen from the data size."""


def sized_config(config: FitConfig, n_train: int) -> FitConfig:
    """Fill ``batch_size``/``epochs`` left at 0: batch ~ n/40 (32..256), ~2,000 steps (30..200 epochs)."""
    batch = config.batch_size or int(min(256, max(32, 2 ** round(math.log2(max(1, n_train) / 40)))))
    steps = max(1, n_train // min(batch, max(1, n_train)))
    epochs = config.epochs or int(min(200, max(30, round(STEP_BUDGET / steps))))
    return replace(config, batch_size=batch, epochs=epochs)


def default_lr(config: FitConfig, near: bool, strategy: Strategy) -> FitConfig:
    """Fill ``lr`` left at 0: :data:`NEAR_LR` for a source near the target (:func:`source_closeness`) and
    for fresh weights, else :data:`FAR_LR`. Measured with single ``full`` fine-tunes x three seeds
    (docs/benchmarks.md): from the formation-energy model on seven new properties (first layer best),
    2e-3 instead of 3e-4 lowered the test MAE by 9 %; from the band-gap model, 3e-4 was 13 % better on
    three related properties (MBJ band gap, SLME, Seebeck coefficient: its last hidden layer best) and
    5 % worse on three unrelated ones (first layer best); on the experimental formation enthalpies (head
    kept) 1e-3 was 12 % worse than 3e-4; with ``reinit`` at 2e-3 too, ``auto`` tested 16 % worse on 225
    steel alloys, where fresh weights win."""
    if config.lr:
        return config
    fresh = strategy.name == "reinit"
    return replace(config, lr=NEAR_LR if near or fresh else FAR_LR)


def source_closeness(kept_head: bool, probe) -> tuple[bool, str]:
    """Whether the source is near the target, and why: its calibrated output layer is kept, or a ridge
    probe of its layers' activations (``probe``: a fitted :class:`~elemnet_tl.features.PretrainedFeatures`,
    or None when the data are too few to probe) predicts the target best from a layer deeper than the first
    (the source's learned, property-specific features carry over) rather than from the first layer."""
    if kept_head:
        return True, "near source: its output layer is kept"
    if probe is None:
        return False, "no probe of the source's layers (too few rows or a constant target)"
    layer, first = probe.layers_[0], probe.cv_table_[0]["candidate"]
    if layer != first:
        return True, f"near source: its layer {layer} predicts the target best in a ridge probe"
    return False, f"far source: its first layer, {first}, predicts the target best in a ridge probe"


def rescale_head(model, old_mean: float, old_std: float, new_mean: float, new_std: float, slope: float = 1.0,
                 intercept: float = 0.0) -> None:
    """Make a kept output layer predict ``slope * source value + intercept`` under the new target scaler
    (the defaults: the same values as the source)."""
    out = model.layers["out"]
    with torch.no_grad():
        out.weight.mul_(slope * old_std / new_std)
        bias = out.bias.double()  # float64: a target offset by 1e6 keeps the bias's digits
        out.bias.copy_((slope * (bias * old_std + old_mean) + intercept - new_mean) / new_std)


SAME_PROPERTY_R = 0.95
"""``keep_head=None`` keeps the pretrained output layer when its predictions correlate at least this much
(in absolute value) with the training target: the target is then the source property up to a linear map."""


def decide_head(keep_head: bool | None, r: float) -> tuple[bool, str]:
    """Whether to keep the pretrained output layer, and why (``keep_head=None``: from the correlation)."""
    if keep_head is not None:
        return keep_head, "kept (--keep-head)" if keep_head else "re-initialised (--new-head)"
    if math.isfinite(r) and abs(r) >= SAME_PROPERTY_R:
        return True, (f"kept and linearly calibrated to the target: the source predicts it with |r| = {abs(r):.3f} "
                      f"≥ {SAME_PROPERTY_R} (same property up to a linear map)")
    if not math.isfinite(r):
        return False, ("re-initialised: the correlation of source predictions and target is undefined "
                       "(fewer than 3 rows or a constant target)")
    return False, f"re-initialised: source predictions vs target r = {r:.2f}, |r| < {SAME_PROPERTY_R} (new property)"


SMALL_SET = 1000
"""Under this many training rows ``auto`` also tries freezing the first layer group (it never won on
1,000 rows or more, and cost a fifth of the time at 5,000) and training from scratch (``reinit`` and
``reinit+pa``: the check against negative transfer, cheap on small sets; docs/benchmarks.md)."""


def auto_candidates(n_train: int, groups: dict[str, list[str]], keep_head: bool | None = None) -> list[str]:
    """Strategies ``auto`` tries on the validation split: transfers from the pretrained weights and, on
    small sets, the same network from fresh weights, with and without physical attributes (``reinit``,
    ``reinit+pa``; not with ``keep_head``, the user's --keep-head, which they could not honour)."""
    first_group = len(next(iter(groups.values())))
    names = ["full", "full+pa"]
    if n_train < SMALL_SET:
        names += [f"freeze:{first_group}"] + ([] if keep_head else ["reinit", "reinit+pa"])
    if n_train < 300:
        names.append("head")
    return names


def source_predictions(loaded, model, fractions: np.ndarray) -> np.ndarray:
    """The pretrained model's predictions for ``fractions``, in the source target's units."""
    pred = predict_tensor(model, torch.as_tensor(fractions)).cpu().numpy().astype(np.float64)
    return pred * loaded.info.target_std + loaded.info.target_mean


def source_correlation(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson r between the source's predictions and the target (how close the properties are)."""
    if len(target) < 3 or is_constant(pred) or is_constant(target):
        return float("nan")
    return float(np.corrcoef(pred, target)[0, 1])


def linear_map(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares ``target ≈ slope * source prediction + intercept``."""
    slope, intercept = np.polyfit(pred, np.asarray(target, dtype=np.float64), 1)
    return float(slope), float(intercept)


def explain_choice(tried: dict, chosen: str, n_train: int, r: float, unit: str, soup_val: float | None = None) -> str:
    """One line: which strategy, why (validation MAE of each candidate), and the context."""
    ranked = sorted(tried.items(), key=lambda kv: kv[1][0].best_val_mae)
    parts = ", ".join(f"{k} {v[0].best_val_mae:.4g}" for k, v in ranked)
    sim = f"r = {r:.2f}" if math.isfinite(r) else "r undefined"
    units = f" ({unit})" if unit else ""
    if chosen.startswith("soup:"):
        members = chosen[5:].replace(",", " and ")
        head = (f"{chosen}: the weight average of {members} validates at {soup_val:.4g}{units}, better than any "
                f"single candidate ({parts})")
    else:
        head = f"{chosen}: lowest validation MAE{units} among {parts}"
    note = "; +pa: the input of Magpie physical attributes to the first layer trains too" if "+pa" in chosen else ""
    if chosen.startswith("reinit"):
        note += ("; fresh weights validated better than every start from the pretrained ones: the source "
                 "does not help this target (negative transfer)")
    return f"{head}; {n_train} training rows, source predictions vs target {sim}{note}"


def finetune(
    data: str | Path,
    run_dir: str | Path,
    *,
    source: str | Path = "auto",
    strategy: str = "auto",
    val: str | Path | None = None,
    test: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    keep_head: bool | None = None,
    members: int = DEFAULT_MEMBERS,
    config: FitConfig | None = None,
    device: str = "auto",
    overwrite: bool = False,
    duplicates: str = "auto",
    formula_col: str | None = None,
    target_col: str | None = None,
    stability_col: str | None = None,
    show_progress: bool = True,
    notices: bool | None = None,
) -> RunResult:
    """Start from a pretrained ElemNet (``source``: ``auto``, ``bundled[:NAME]`` or a run directory) and fit
    ``data``.

    ``strategy``: ``full``, ``freeze:K``, ``head``, ``reinit``, ``gradual`` (each also with ``+pa``:
    Magpie physical attributes feed the first layer too) or ``auto`` (tries the candidates of
    :func:`auto_candidates` on the validation split and keeps the best; the card's ``strategy`` says
    which and why). ``keep_head``: keep the pretrained output layer (True), re-initialise
    it (False), or (None) keep it, linearly calibrated, only when the source already predicts the target
    with r ≥ :data:`SAME_PROPERTY_R`; the card's ``head`` says which and why.
    ``members`` > 1 averages that many fine-tuned models, each validated on its own split. ``test`` (a file) or
    ``test_fraction`` (a seeded hold-out of ``data``, after merging duplicates) is scored once at the end.
    ``source="auto"`` (default) starts from the bundled model whose activations a ridge probe finds most
    predictive of the target on the training rows, formation energy unless another is clearly better
    (:mod:`elemnet_tl.sources`; the card's ``source_choice`` says which and why).
    ``notices``: print the data summary, rejected-row files, warnings, the source choice and the result (default:
    ``show_progress``).
    """
    config = config or FINETUNE_DEFAULTS
    source = run_folder(source)  # a finetune/pretrain result: its run directory
    check_source(source, "source", "'auto', 'bundled', 'bundled:NAME' or a run directory")
    resolve_device(device)  # a bad --device fails before anything is read or written
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"--ensemble must be a whole number of at least 1, got {members!r}")
    check_run_dir(run_dir, resume=False, overwrite=overwrite)  # before the data are read and the sources probed
    parsed = parse_strategy(strategy, n_layers=None)  # its spelling, before then (K's bound: once the model is known)
    if keep_head and parsed.name == "reinit":
        raise InputError(f"--keep-head has no effect with --strategy {strategy}: every layer, the output layer too, "
                         "starts from fresh weights")
    options = _Options(strategy=strategy, val=val, test=test, val_fraction=val_fraction,
                       test_fraction=test_fraction, keep_head=keep_head,
                       members=members, config=config, device=device, overwrite=overwrite, duplicates=duplicates,
                       formula_col=formula_col, target_col=target_col, stability_col=stability_col,
                       show_progress=show_progress, notices=show_progress if notices is None else notices)
    if is_auto(source):
        inputs = _load_inputs(data, options)
        x_tr, y_tr, _, _ = inputs.arrays()
        chosen, choice, probes = choose_source(x_tr, y_tr, config.seed, str(resolve_device(device)))
        result = _finetune(data, run_dir, chosen, options, inputs=inputs, probe=probes.get(chosen),
                           notes=(f"--from auto: {chosen} — {choice['reason']}",))
        result.card["source_choice"] = choice
        write_json(result.run_dir / CARD_FILE, result.card)
    else:
        result = _finetune(data, run_dir, source, options)
    if options.notices:
        result.print_summary()
    return result


@dataclass(frozen=True)
class _Options:
    """:func:`finetune`'s options other than the data, run directory and source."""

    strategy: str
    val: str | Path | None
    test: str | Path | None
    val_fraction: float
    test_fraction: float
    keep_head: bool | None
    members: int
    config: FitConfig
    device: str
    overwrite: bool
    duplicates: str
    formula_col: str | None
    target_col: str | None
    stability_col: str | None
    show_progress: bool
    notices: bool


def _load_inputs(data: str | Path, o: _Options) -> TrainingInputs:
    """The training data, validation split or file and test file of a fine-tune."""
    return load_training_inputs(data, val=o.val, test=o.test, val_fraction=o.val_fraction,
                                test_fraction=o.test_fraction, seed=o.config.seed,
                                duplicates=o.duplicates, formula_col=o.formula_col, target_col=o.target_col,
                                stability_col=o.stability_col)


def _finetune(data: str | Path, run_dir: str | Path, source: str | Path, o: _Options, *,
              start_like: str | None = None, inputs: TrainingInputs | None = None, probe=None,
              notes: tuple[str, ...] = ()) -> RunResult:
    """:func:`finetune` from one source. ``start_like``: build the start network as a run of that
    strategy would (the physical-attribute input too; ``scripts/study_selection.py`` reuses a run's
    candidates that way). ``inputs``: the data, already loaded. ``probe``: the source's ridge probe on
    these training rows (:func:`~elemnet_tl.sources.probe_source`), already fitted. ``notes``: lines printed
    after the data summary."""
    model, loaded, source_record = load_start_network(source)  # one network of a fine-tuned ensemble
    if loaded.info.members > 1:
        notes = (*notes, f"{source}: an ensemble of {loaded.info.members} networks; fine-tuning starts from its "
                         "first (a start is one network)")
    strat = parse_strategy(o.strategy, len(model.layer_names))
    like = parse_strategy(start_like, len(model.layer_names)) if start_like else strat  # only auto's start differs
    inputs = inputs or _load_inputs(data, o)
    x_tr, y_tr, _, _ = inputs.arrays()
    config = sized_config(o.config, len(y_tr))
    pred = source_predictions(loaded, model, x_tr)
    r = source_correlation(pred, y_tr)
    kept, head_reason = decide_head(o.keep_head, r)
    fresh_only = strat.name == "reinit"  # its rate does not depend on the source
    if probe is None and not kept and not o.config.lr and not fresh_only:  # the rate depends on how near it is
        probe = probe_source(str(source), x_tr, y_tr, config.seed, str(resolve_device(o.device)))
    near, near_reason = source_closeness(kept, probe)
    torch.manual_seed(config.seed)  # after the probe: loading its network draws initial weights
    if kept:
        fitted = linear_map(pred, y_tr) if o.keep_head is None else (1.0, 0.0)
        rescale_head(model, loaded.info.target_mean, loaded.info.target_std, *standardize(y_tr), *fitted)
    else:
        model.reset_head()

    needs_attributes = strat.name == "auto" or strat.attributes or like.name == "auto"
    if needs_attributes and model.attributes is None:
        model.add_attributes(x_tr)

    def phases_of(cand: Strategy, m) -> list:
        return strategy_phases(cand, m, default_lr(config, near, cand))  # each start its own default rate

    def phases_for(name: str):
        return lambda m: phases_of(parse_strategy(name, len(m.layer_names)), m)

    head_record = {"kept": kept, "reason": head_reason}
    fresh_rate = {"near_source": None, "reason": FRESH_REASON}  # nearness does not apply to fresh weights
    rate_record = {"given": bool(o.config.lr), "near_source": near,
                   "reason": "given (--lr)" if o.config.lr else near_reason}
    if fresh_only and not o.config.lr:
        rate_record.update(fresh_rate)
    if strat.name == "auto":
        names = auto_candidates(len(y_tr), model.groups, o.keep_head)
        plan: object = {name: phases_for(name) for name in names}

        def describe(tried: dict, chosen: str, soup_val: float | None = None) -> dict:
            reason = explain_choice(tried, chosen, len(y_tr), r, inputs.unit, soup_val)
            fresh = chosen.startswith("reinit") and not o.config.lr  # its rate did not depend on the source
            return {"strategy": {"name": chosen, "reason": reason, "auto": True, "candidates": names},
                    "learning_rate": {**rate_record, **fresh_rate} if fresh else rate_record}
        soup = [n for n in names if not n.startswith("reinit")]  # fresh weights do not average with the others
        extra = {"source_model": source_record, "source_correlation": r, "head": head_record,
                 "learning_rate": rate_record}
    else:
        plan = phases_of(strat, model)
        describe, soup = None, None
        extra = {"source_model": source_record, "source_correlation": r, "head": head_record,
                 "learning_rate": rate_record,
                 "strategy": {"name": str(strat), "reason": "chosen by the user", "auto": False}}
    return run_training(run_dir, model, inputs, plan, command="finetune", device=o.device, overwrite=o.overwrite,
                        extra_card=extra, describe=describe, members=o.members,
                        soup=soup,
                        show_progress=o.show_progress, notices=o.notices, checkpoint=False,
                        keep_trained=start_like is not None, notes=notes)


__all__ = ["FINETUNE_DEFAULTS", "Strategy", "finetune", "sized_config"]
