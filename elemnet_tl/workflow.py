"""Shared steps of every command that trains: inputs, split, scaler, fit, test, run directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import STATE_FILE, ModelInfo, input_kind
from .datasets import check_source
from .elements import element_rows
from .errors import InputError, plural
from .featurize import (
    Featurized,
    check_several_compositions,
    held_out_record,
    input_warnings,
    load_and_prepare,
    merged_note,
    overlap_warning,
    shared_compositions,
    test_predictions_frame,
    write_merged,
    write_rejected,
)
from .io import write_table
from .model import ElemNet, ElemNetEnsemble
from .progress import console, epoch_bar
from .runs import NO_TEST_METRICS, finish_run, prepare_run_dir, provenance, regression_metrics, train_in_run_dir
from .training import FitConfig, FitResult, member_seed, predict_tensor, resolve_device, standardize


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle split into (train, validation) indices; at least one row each when n >= 2."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n)))) if n >= 2 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class TrainingInputs:
    """Featurized train (and optional validation / test) data plus the split."""

    train: Featurized
    val: Featurized | None
    test: Featurized | None
    train_idx: np.ndarray
    val_idx: np.ndarray
    target_name: str = "target"
    unit: str = ""
    records: dict = field(default_factory=dict)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x_train, y_train, x_val, y_val) as numpy arrays in target units."""
        x, y = self.train.fractions, self.train.target
        if self.val is not None:
            return x, y, self.val.fractions, self.val.target
        return x[self.train_idx], y[self.train_idx], x[self.val_idx], y[self.val_idx]


def subset(f: Featurized, idx: np.ndarray) -> Featurized:
    """The same record restricted to the kept rows ``idx`` (a held-out part of one file)."""
    return replace(f, frame=f.frame.iloc[idx].reset_index(drop=True), fractions=f.fractions[idx])


MIN_TRAINING_ROWS = 10
"""Fewer usable rows than this cannot train and validate a network meaningfully: an input error."""
MIN_FIT_ROWS = 5
"""Fewer rows than this left to train on after the validation split (a large ``--val-fraction``): an input error."""


def load_training_inputs(
    data: str | Path,
    *,
    val: str | Path | None = None,
    test: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    duplicates: str = "auto",
    formula_col: str | None = None,
    target_col: str | None = None,
    stability_col: str | None = None,
) -> TrainingInputs:
    """Load and featurize the training data (deduplicated), a validation file or split, and a test file
    (never deduplicated: every test row is scored) or a seeded ``test_fraction`` of the data."""
    for name, value in (("data", data), ("val", val), ("test", test)):
        check_source(value, name)
    if test and test_fraction:
        raise InputError("give either --test or --test-fraction, not both")
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= value < 1 or (name == "--val-fraction" and not val and value == 0):
            raise InputError(f"{name} must be between 0 and 1, got {value:g}")
    train = load_and_prepare(data, formula_col, target_col, duplicates, stability_col)
    check_several_compositions(train)
    needed = MIN_TRAINING_ROWS + bool(test_fraction)
    if train.n_kept < needed:
        raise InputError(f"{data}: {plural(train.n_kept, 'usable row')} after rejections and "
                         f"duplicates; training a network needs at least {needed} (rows to train on"
                         f"{'' if val else ' and to validate on'}{' and to test on' if test_fraction else ''})")
    val_f = load_and_prepare(val, formula_col, target_col, duplicates, stability_col, like=train) if val else None
    test_f = load_and_prepare(test, formula_col, target_col, "keep", like=train) if test else None
    train_record = train.record()  # counts of the whole file, before a --test-fraction hold-out
    if test_fraction:
        keep_idx, test_idx = split_indices(train.n_kept, test_fraction, seed + 1)
        test_f = subset(train, test_idx)
        if len(keep_idx) < MIN_TRAINING_ROWS:
            raise InputError(f"{data}: --test-fraction {test_fraction:g} leaves {len(keep_idx)} of "
                             f"{train.n_kept} rows to train and validate on; a network needs at least "
                             f"{MIN_TRAINING_ROWS}: lower --test-fraction")
        train = subset(train, keep_idx)
    if val_f is None:
        train_idx, val_idx = split_indices(train.n_kept, val_fraction, seed)
        if len(train_idx) < MIN_FIT_ROWS:
            raise InputError(f"{data}: --val-fraction {val_fraction:g} leaves {plural(len(train_idx), 'row')} of "
                             f"{train.n_kept} to train on; a network needs at least {MIN_FIT_ROWS}: lower "
                             "--val-fraction")
    else:
        train_idx, val_idx = np.arange(train.n_kept), np.array([], dtype=int)
    prov = train.table.provenance
    records = {"train": train_record}
    if val_f is not None:
        records["val"] = held_out_record(val_f, train)
    if test_f is not None:
        records["test"] = held_out_record(test_f, train)
        if test_fraction:
            records["test"] = {"source": f"seeded {test_fraction:g} hold-out of {train.table.source}",
                               "kept": test_f.n_kept, "seed": seed + 1,  # --duplicates keep: twins may stay
                               "rows_in_training_data": shared_compositions(test_f.fractions, train.fractions)}
        records["train"]["kept_for_training"] = train.n_kept
    return TrainingInputs(train, val_f, test_f, train_idx, val_idx,
                          target_name=train.table.target_name,
                          unit=str(prov.get("unit", "")), records=records)


def trained_elements(inputs: TrainingInputs, members: int) -> dict[str, int]:
    """Training rows holding each element (the card's record, for ``predict``'s unseen elements): a single
    network's training split; for an ensemble every row of the training data, since each member validates
    on other rows and the rest train on them. Card only: a resumed run compares ``inputs.records``."""
    rows = inputs.train.fractions if members > 1 else inputs.train.fractions[inputs.train_idx]
    return element_rows(rows)


def write_rejections(run_dir: Path, inputs: TrainingInputs) -> list[str]:
    """Rejected rows of each input, beside the run; returns each input's summary line (rows read,
    rejected, merged, kept; the guessed target column) and one message per file written."""
    notes = []
    carved_test = inputs.test is not None and inputs.test.table is inputs.train.table  # --test-fraction
    for name, f in (("train", inputs.train), ("val", inputs.val), ("test", inputs.test)):
        if f is None:
            continue
        carved = name == "test" and carved_test
        role = {"train": "", "val": "validation file ", "test": "test file "}[name]
        held_out = inputs.test.n_kept if name == "train" and carved_test else 0
        notes.append(f"test: {inputs.records['test']['source']} ({plural(f.n_kept, 'row')})" if carved
                     else role + f.summary(held_out))
        twins = overlap_warning(f, inputs.train) if carved else None  # --duplicates keep leaves twins behind
        if twins:
            notes.append(twins)
        path = None if carved else write_rejected(f, run_dir / f"{name}.rejected.csv")
        if path is not None:
            notes.append(f"{plural(f.n_rejected, 'rejected row')} of {f.table.source} listed in {path}")
        merged = None if carved else write_merged(f, run_dir / f"{name}.rejected.csv")
        if merged is not None:
            notes.append(merged_note(f, merged))
        if not carved:
            notes.extend(input_warnings(f, None if name == "train" else inputs.train,
                                        "validation" if name == "val" else "test"))
    return notes


@dataclass
class RunResult:
    """What a training command returns: the run directory, its card and the trained model."""

    run_dir: Path
    card: dict
    model: ElemNet
    info: ModelInfo
    trained: dict = field(default_factory=dict, repr=False)
    """With ``run_training(keep_trained=True)``: each candidate's training (name -> result, phase
    summaries, weights, config)."""

    @property
    def metrics(self) -> dict:
        return self.card["metrics"]

    def summary_lines(self) -> list[str]:
        """What a finished run says: a fine-tune's strategy, output layer and learning rate, the validation
        (and test) MAE, a warning when it learned nothing, and the run directory."""
        card, m = self.card, self.metrics
        lines = []
        chosen = card.get("strategy")
        if isinstance(chosen, dict) and "head" in card and "learning_rate" in card:
            lines += [f"strategy {chosen['name']} — {chosen['reason']}",
                      f"output layer {card['head']['reason']}; peak learning rate {card['training']['lr']:g} "
                      f"({card['learning_rate']['reason']})"]
        part = f"best validation MAE {m['val_mae']:.4g} {self.info.unit}".rstrip()
        ensemble = card.get("ensemble") or {}
        others = ensemble.get("other_members_val_mae")
        if others:  # members validate on their own splits (or one --val file): no one validation MAE of the ensemble
            listed = ", ".join(f"{v:.4g}" for v in others)
            own = "each on its own validation split" if "own" in str(ensemble.get("validation", "own")) \
                else "on the validation file"
            part += f" (first of {len(others) + 1} networks; the other{'s' if len(others) > 1 else ''} {listed}, {own})"
        n_candidates = len(chosen.get("candidates") or []) if isinstance(chosen, dict) else 0
        if n_candidates > 1:
            part += (f"; the first network's validation rows also chose among {n_candidates} candidates, so its "
                     "figure is optimistic")
        parts = [part]
        if m.get("test_mae") is not None:
            parts.append(f"test MAE {m['test_mae']:.4g}, RMSE {m['test_rmse']:.4g}, R² {m['test_r2']:.3f}")
        lines.append("; ".join(parts))
        baseline = (card.get("split") or {}).get("val_mae_of_training_mean")
        if baseline and not m["val_mae"] < baseline:  # 0: a constant target, warned about already
            lines.append(f"warning: the best validation MAE ({m['val_mae']:.4g}) is no better than predicting the "
                         f"training mean ({baseline:.4g}): the network did not learn this target (a learning rate "
                         "too large? see --lr)")
        return [*lines, f"run directory: {self.run_dir}"]

    def print_summary(self) -> None:
        """Print :meth:`summary_lines`."""
        for line in self.summary_lines():
            console.print(line, highlight=False, soft_wrap=True, markup=False)


def metrics_note(card: dict, unit: str = "") -> str:
    """What a training card's ``metrics`` are: which network's validation MAE, on which rows, what else those
    rows chose (so how optimistic it is), where the test metrics come from, and the unit."""
    split, data = card["split"], card["data"]
    whose = "the first network's" if (card.get("ensemble") or {}).get("other_members_val_mae") else "the"
    rows = "the --val file" if split["validation"] == "file" else f"{split['n_val']} training rows held out"
    strategy = card.get("strategy")
    n_candidates = len(strategy.get("candidates") or []) if isinstance(strategy, dict) else 0
    chose = "the best epoch" + (f" and the strategy among {n_candidates} candidates" if n_candidates > 1 else "")
    test = data.get("test")
    if test is None:
        tested = NO_TEST_METRICS
    else:
        carved = "seed" in test  # --test-fraction
        tested = (f"test metrics from the {test['source']}, never trained or validated on" if carved
                  else "test metrics from the --test file, every kept row scored")
        if test.get("rows_in_training_data"):
            tested += (f" ({test['rows_in_training_data']} of them are compositions of the training data: "
                       "the test figure flatters)")
    return (f"val_mae is {whose} best MAE on {rows}, which also chose {chose} (so it is optimistic); {tested}; "
            f"in {unit or 'the target unit'}")


def run_phases(
    run_dir: Path,
    model: ElemNet,
    data: tuple[torch.Tensor, ...],
    phases: list,
    record: dict,
    *,
    device: torch.device,
    y_scale: float,
    resume: bool,
    show: bool,
    label: str,
    unit: str,
    checkpoint: bool,
) -> tuple[FitResult, list[dict]]:
    """Run each phase's fit in turn (one progress bar each); keep the weights of the best phase.

    Only a one-phase plan saves a resumable state. Returns the combined result and a per-phase summary.
    """
    history, summaries, best = [], [], None
    seconds = 0.0
    for phase in phases:
        groups = phase.param_groups(model) if phase.param_groups else None
        text = label if not phase.name or phase.name in label.split() else f"{label} {phase.name}"
        with epoch_bar(f"{text} ({device.type})", phase.config.epochs, show, unit) as on_epoch:
            trained = train_in_run_dir(run_dir, model, data, phase.config, {**record, "phase": phase.name},
                                       device=device, y_scale=y_scale, resume=resume and len(phases) == 1,
                                       param_groups=groups, on_epoch=on_epoch,
                                       checkpoint=checkpoint and len(phases) == 1)
        result = trained.fit
        offset = len(history)
        history += [replace(h, epoch=h.epoch + offset) for h in result.history]
        seconds += result.seconds
        summaries.append({"phase": phase.name, **phase.config.to_dict(), "best_epoch": result.best_epoch,
                          "epochs_run": len(result.history), "best_val_mae": result.best_val_mae})
        if best is None or result.best_val_mae <= best[0]:
            best = (result.best_val_mae, result.best_epoch + offset, copy_state(model), result.stopped_early)
    for p in model.parameters():
        p.requires_grad_(True)
    model.load_state_dict(best[2])
    return FitResult(best[1], best[0], history, best[3], seconds), summaries


def train_members(
    first: ElemNet,
    start: dict,
    recipe: list[Callable],
    members: int,
    inputs: TrainingInputs,
    scaler: tuple[float, float],
    run_dir: Path,
    *,
    seed: int,
    device: torch.device,
    show: bool,
    label: str,
    unit: str,
) -> tuple[ElemNetEnsemble, dict]:
    """Train ``members - 1`` more copies from ``start``, member ``i`` validating on its own seeded split
    (or the validation file), all with the same target scaler; returns the ensemble and a summary.

    ``recipe``: the chosen candidate's ``make_phases``, or each ingredient's when the choice was a soup:
    every member then trains each ingredient on its split and keeps their greedy weight soup on that split
    (:func:`greedy_soup`: the best ingredient alone unless an average validates better), as the first did."""
    mean, std = scaler
    x_tr, y_tr, x_va, y_va = inputs.arrays()
    x_tr, x_va = first.prepare(x_tr), first.prepare(x_va)  # attributes (if any) computed once, not per member
    if inputs.val is None:
        x_all, y_all = np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])
        fraction = len(y_va) / len(y_all)
    nets, vals, souped, seconds = [first], [], [], 0.0
    for i in range(1, members):
        if inputs.val is None:
            tr, va = split_indices(len(y_all), fraction, seed + 7919 * i)
            arrays = (x_all[tr], y_all[tr], x_all[va], y_all[va])
        else:
            arrays = (x_tr, y_tr, x_va, y_va)
        data = tuple(torch.as_tensor(a if k % 2 == 0 else (a - mean) / std, dtype=torch.float32)
                     for k, a in enumerate(arrays))
        net = ElemNet(first.arch, n_inputs=first.n_inputs, dropout=first.dropout,
                      attributes=first.attributes is not None).to(device)
        states, val = {}, 0.0
        for j, make_phases in enumerate(recipe):
            net.load_state_dict(start)
            phases = [replace(p, config=replace(p.config, seed=member_seed(seed, i))) for p in make_phases(net)]
            where = run_dir / "members" / (str(i) if len(recipe) == 1 else f"{i}_{j}")
            where.mkdir(parents=True, exist_ok=True)
            result, _ = run_phases(where, net, data, phases, {"member": i}, device=device, y_scale=std,
                                   resume=False, show=show, label=f"{label} member {i + 1}/{members}", unit=unit,
                                   checkpoint=False)
            states[str(j)] = (result.best_val_mae, copy_state(net))
            val, seconds = result.best_val_mae, seconds + result.seconds
        if len(states) > 1:  # this member's own soup, chosen on its own split
            used, val, state = greedy_soup(net, states, data[2].to(device), data[3].to(device), std)
            net.load_state_dict(state)
            souped.append([int(j) for j in used])
        nets.append(net)
        vals.append(val)
    how = ("each member holds out its own seeded split of the training data" if inputs.val is None
           else "every member validates on the validation file; their seeds differ")
    note = {"other_members_val_mae": vals, "seconds": round(seconds, 2), "validation": how}
    if souped:
        note["other_members_ingredients"] = souped  # indices into the chosen soup's ingredients
    return ElemNetEnsemble(nets), note


def greedy_soup(model: ElemNet, ingredients: dict[str, tuple[float, dict]], x_val: torch.Tensor,
                y_val: torch.Tensor, y_scale: float) -> tuple[list[str], float, dict]:
    """Greedy model soup (Wortsman et al. 2022): average the weights of fine-tuned models that started
    from the same pretrained weights, adding each (best validation first) only if the average's
    validation MAE improves. Returns the names used, the soup's validation MAE and its weights."""
    order = sorted(ingredients, key=lambda k: ingredients[k][0])
    names, best_val = [order[0]], ingredients[order[0]][0]
    best_state = ingredients[order[0]][1]
    for name in order[1:]:
        trial = average_states([ingredients[n][1] for n in names + [name]])
        model.load_state_dict(trial)
        val = float((predict_tensor(model, x_val) - y_val).abs().mean()) * y_scale
        if val < best_val:
            names, best_val, best_state = names + [name], val, trial
    return names, best_val, best_state


def average_states(states: list[dict]) -> dict:
    """The element-wise mean of several networks' weights (a uniform soup), each tensor in its own dtype
    (the float64 attribute statistics stay exact); tensors that are not floating point are the first's."""
    return {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v.clone()
            for k, v in states[0].items()}


def copy_state(model: ElemNet) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_training(
    run_dir: str | Path,
    model: ElemNet,
    inputs: TrainingInputs,
    plan: FitConfig | list,
    *,
    command: str,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    extra_card: dict | None = None,
    describe: Callable[[dict, str, float], dict] | None = None,
    soup: list[str] | None = None,
    members: int = 1,
    show_progress: bool = True,
    notices: bool | None = None,
    checkpoint: bool = True,
    keep_trained: bool = False,
    notes: tuple[str, ...] = (),
) -> RunResult:
    """Standardize the target, fit with early stopping, score the test file, write the run directory.

    ``plan`` is a :class:`FitConfig`, a list of ``transfer.Phase``, or candidates
    ``{name: model -> list[Phase]}``: each candidate starts from the same weights and the one with the
    best validation MAE is kept (``describe(tried, chosen)`` adds the why to the card); ``soup`` names
    candidates that share a start: a greedy weight average of them replaces the choice when that
    validates better. With ``members`` > 1 the chosen candidate (each ingredient of a chosen soup, then
    that member's own greedy soup of them) is trained again ``members - 1`` times, each on its own seeded
    validation split, and the run's model is the ensemble (mean) of all of them.
    ``keep_trained`` returns each candidate's training in ``RunResult.trained``.
    ``notices``: print the data summary, rejected-row files, ``notes`` (lines about choices made before
    the training, such as the source) and warnings (default: ``show_progress``).
    """
    from .transfer import Phase, layers_groups, plus_attributes

    if isinstance(plan, FitConfig):  # one fit of every layer, and of the attribute input when the network has one
        groups = layers_groups(model.layer_names)
        plan = [Phase(command, plan, groups if model.attributes is None else plus_attributes(groups))]
    candidates = plan if isinstance(plan, dict) else {"": lambda m, phases=plan: phases}
    read = tuple(str(f.table.provenance.get("path", "")) for f in (inputs.train, inputs.val, inputs.test) if f)
    run_dir = prepare_run_dir(run_dir, resume, overwrite, inputs=read)
    notices = show_progress if notices is None else notices
    if resume and notices:
        saved = (run_dir / STATE_FILE).is_file()
        console.print(f"--resume: continuing the interrupted run in {run_dir}" if saved else
                      f"--resume: no saved progress in {run_dir}; starting from epoch 1", highlight=False)
    for note in (*write_rejections(run_dir, inputs), *notes):
        if notices:
            console.print(note, highlight=False, markup=False, soft_wrap=True)
    dev = resolve_device(device)
    x_tr, y_tr, x_va, y_va = inputs.arrays()
    mean, std = standardize(y_tr)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(model.prepare(x), dtype=torch.float32),
                torch.as_tensor((y - mean) / std, dtype=torch.float32))

    data = (*tensors(x_tr, y_tr), *tensors(x_va, y_va))
    if len(y_va) < 20 and notices:
        what = "early stopping and the strategy choice are" if len(candidates) > 1 else "early stopping is"
        console.print(f"warning: only {plural(len(y_va), 'validation row')}: {what} mostly noise at "
                      "this size", highlight=False, soft_wrap=True)
    model.to(dev)
    start = copy_state(model)
    tried: dict[str, tuple] = {}
    for name, make_phases in candidates.items():
        where = run_dir / "candidates" / name.replace(":", "_") if len(candidates) > 1 else run_dir
        model.load_state_dict(start)
        phases = make_phases(model)
        record = {"command": command, "arch": model.arch, "data": inputs.records, "candidate": name,
                  "phases": [{"name": p.name, **p.config.to_dict()} for p in phases],
                  "n_train": int(len(y_tr)), "n_val": int(len(y_va))}
        where.mkdir(parents=True, exist_ok=True)
        result, summaries = run_phases(where, model, data, phases, record, device=dev, y_scale=std,
                                       resume=resume and len(candidates) == 1, show=show_progress,
                                       label=f"{command} {name}".strip(), unit=inputs.unit, checkpoint=checkpoint)
        tried[name] = (result, summaries, copy_state(model), phases[-1].config)
    chosen = min(tried, key=lambda k: tried[k][0].best_val_mae)
    fit_result, summaries, best_state, config = tried[chosen]
    model.load_state_dict(best_state)
    pot = [k for k in tried if k in (soup or ())]
    if len(pot) > 1 and len(y_va):
        names, soup_val, soup_state = greedy_soup(model, {k: (tried[k][0].best_val_mae, tried[k][2]) for k in pot},
                                                  data[2].to(dev), data[3].to(dev), std)
        if len(names) > 1 and soup_val < fit_result.best_val_mae:
            model.load_state_dict(soup_state)
            chosen = "soup:" + ",".join(names)
            fit_result = replace(fit_result, best_val_mae=soup_val)
        else:
            model.load_state_dict(best_state)  # the evaluation left the last trial in the model
    ensemble_note = None
    if members > 1:  # more members of the chosen recipe: one candidate, or the soup of its ingredients
        recipe = chosen[len("soup:"):].split(",") if chosen.startswith("soup:") else [chosen]
        model, ensemble_note = train_members(
            model, start, [candidates[k] for k in recipe], members, inputs, (mean, std), run_dir,
            seed=config.seed, device=dev, show=show_progress, label=f"{command} {chosen}".strip(), unit=inputs.unit)
        ensemble_note = {"members": members, "strategy": chosen or command, **ensemble_note,
                         "first_member_val_mae": fit_result.best_val_mae}
        fit_result = replace(fit_result, seconds=fit_result.seconds + ensemble_note["seconds"])
        extra_card = {**(extra_card or {}), "ensemble": ensemble_note}
    if len(candidates) > 1:
        why = describe(tried, chosen, fit_result.best_val_mae) if describe else {}
        extra_card = {**(extra_card or {}), **why,
                      "candidates": {k: {"val_mae": v[0].best_val_mae, "seconds": round(v[0].seconds, 2)}
                                     for k, v in tried.items()}}
    metrics = {"val_mae": fit_result.best_val_mae, "test_mae": None, "test_rmse": None, "test_r2": None}
    if inputs.test is not None:
        pred = predict_tensor(model, torch.as_tensor(inputs.test.fractions).to(dev)).cpu().numpy().astype(np.float64)
        pred = pred * std + mean  # in float64: a target offset by 1e9 keeps its digits
        scores = regression_metrics(inputs.test.target, pred)
        metrics.update(test_mae=scores["mae"], test_rmse=scores["rmse"], test_r2=scores["r2"])
        write_table(test_predictions_frame(inputs.test, pred), run_dir / "test_predictions.csv")
    model.drop_unused_attributes()
    info = ModelInfo(arch=model.arch, dropout=model.dropout, target_mean=mean, target_std=std,
                     target=inputs.target_name, unit=inputs.unit, members=members, inputs=input_kind(model))
    card = {
        **provenance(config.seed, str(dev)),
        "command_kind": command,
        "data": {**inputs.records, "train": {**inputs.records["train"],
                                             "element_rows": trained_elements(inputs, members)}},
        "split": {"n_train": int(len(y_tr)), "n_val": int(len(y_va)),
                  "validation": "file" if inputs.val is not None else f"seeded {len(y_va)}-row hold-out of the data",
                  "n_test": inputs.test.n_kept if inputs.test is not None else 0,
                  # the yardstick of "did it learn": predicting the training mean for every validation row
                  "val_mae_of_training_mean": float(np.abs(y_va - y_tr.mean()).mean()) if len(y_va) else None},
        "training": {**config.to_dict(), "best_epoch": fit_result.best_epoch, "epochs_run": len(fit_result.history),
                     "stopped_early": fit_result.stopped_early, "wall_seconds": round(fit_result.seconds, 2),
                     "phases": summaries},
        "metrics": metrics,
        **(extra_card or {}),
    }
    card["metrics_note"] = metrics_note(card, inputs.unit)
    finish_run(run_dir, model, info, card, fit_result.history, fit_result.best_epoch)
    return RunResult(run_dir, card, model, info, tried if keep_trained else {})
