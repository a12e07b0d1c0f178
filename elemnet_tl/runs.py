"""Run directories: provenance, per-epoch metrics, the card, plots, and resumable training."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint import CARD_FILE, MODEL_FILE, STATE_FILE, ModelInfo, load_state, save_model, save_state
from .datasets import sha256_of
from .errors import InputError, TrainingDiverged
from .io import atomic_path, jsonable, write_json, write_table
from .model import ElemNet, count_parameters
from .training import EpochLog, FitConfig, FitResult, TrainState, fit

METRICS_FILE = "metrics.csv"
CURVE_FILE = "learning_curve.png"
RUN_FILE = "run.json"
NO_TEST_METRICS = "no --test file: test metrics are null"
"""How a card's ``metrics_note`` ends without a test file (compare-scratch rewrites it when it scores the run)."""
PACKAGES = ("elemnet_tl", "torch", "numpy", "pandas", "pymatgen", "matminer", "scikit-learn", "safetensors")


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape results."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(seed: int | None, device: str) -> dict:
    """Command line, versions, time, seed and device: what produced a directory."""
    return {
        "command": " ".join(shlex.quote(a) for a in ["elemtl", *sys.argv[1:]]) if sys.argv else "",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "host": platform.node(),
        "seed": seed,
        "device": device,
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (R² is NaN for fewer than two rows or a constant target)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    err = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum()) if len(y_true) else 0.0
    r2 = 1.0 - float((err ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())), "r2": r2}


def default_save_every() -> float:
    """Seconds between resumable saves: ``$ELEMTL_SAVE_EVERY`` (0 = every epoch), default 15."""
    text = os.environ.get("ELEMTL_SAVE_EVERY", "").strip()
    if not text:
        return 15.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"ELEMTL_SAVE_EVERY={text!r}: seconds between resume saves (0 = every epoch)")
    return value


def refuse_non_directory(path: Path) -> None:
    """An output folder named like an existing file is one clear line, not a traceback later."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory")


def _what_differs(old: object, new: object) -> str:
    """Where two run records differ, as dotted keys (``config.epochs, data.train.sha256 differ``)."""
    def keys(a: object, b: object, path: str) -> list[str]:
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return [path or "the record"]
        return [k for key in dict.fromkeys([*a, *b]) if a.get(key) != b.get(key)
                for k in keys(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))]

    found = keys(old, new, "")
    return ", ".join(found[:3]) + (", ..." if len(found) > 3 else "") + (" differ" if len(found) > 1 else " differs")


def refuse_both(resume: bool, overwrite: bool) -> None:
    """``--resume`` keeps what an output folder holds, ``--overwrite`` replaces it: not both."""
    if resume and overwrite:
        raise InputError("give --resume (continue the run in the output folder) or --overwrite (replace it), "
                         "not both")


def check_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> Path:
    """Refuse (:class:`InputError`) a ``run_dir`` that is a file or holds a finished or running run, unless
    told; touches nothing (commands call it before long preparations, :func:`prepare_run_dir` again)."""
    run_dir = Path(run_dir)
    refuse_both(resume, overwrite)
    refuse_non_directory(run_dir)
    used = run_dir.is_dir() and any((run_dir / f).exists() for f in (MODEL_FILE, STATE_FILE, CARD_FILE))
    if used and not (resume or overwrite):
        raise InputError(f"{run_dir}: already holds a run; pass --overwrite to replace it"
                         + (" or --resume to continue it" if (run_dir / STATE_FILE).exists() else ""))
    if resume and used and not (run_dir / STATE_FILE).exists() and (run_dir / MODEL_FILE).exists():
        raise InputError(f"{run_dir}: this run already finished; use --overwrite to train it again")
    return run_dir


INPUT_LISTS = tuple(f"{name}.{kind}.csv" for name in ("train", "val", "test") for kind in ("rejected", "merged"))
"""The rejected-row and merged-row lists a run writes about its inputs."""


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool, inputs: tuple[str, ...] = ()) -> Path:
    """Create ``run_dir``; refuse to clobber a finished or running run unless told. ``--overwrite`` removes
    the earlier run's files, never one of ``inputs`` (the paths of the files this run reads)."""
    run_dir = check_run_dir(run_dir, resume, overwrite)
    if overwrite and not resume:
        kept = {Path(p).resolve() for p in inputs if p}
        for f in (MODEL_FILE, STATE_FILE, CARD_FILE, METRICS_FILE, CURVE_FILE, RUN_FILE, "test_predictions.csv",
                  *INPUT_LISTS):
            if (run_dir / f).resolve() not in kept:
                (run_dir / f).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "candidates", ignore_errors=True)
        shutil.rmtree(run_dir / "members", ignore_errors=True)
    if run_dir.is_dir():
        for f in run_dir.glob(".*.tmp"):  # left by a killed write
            f.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{run_dir}: cannot create the run directory: {exc.strerror or exc}") from None
    return run_dir


def write_metrics(run_dir: Path, history: list[EpochLog]) -> None:
    write_table(pd.DataFrame([vars(h) for h in history]), run_dir / METRICS_FILE)


def plot_learning_curve(run_dir: Path, history: list[EpochLog], best_epoch: int, unit: str = "") -> None:
    """Train loss and validation MAE per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h.epoch for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h.val_mae for h in history], label=f"validation MAE ({unit})" if unit else "validation MAE")
    ax.axvline(best_epoch, color="grey", ls=":", label=f"best epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation MAE")
    _log_if_wide(ax, [h.val_mae for h in history])
    ax2 = ax.twinx()
    ax2.plot(epochs, [h.train_loss for h in history], color="tab:orange", alpha=0.6, label="train loss (scaled)")
    ax2.set_ylabel("train loss (standardized target)")
    _log_if_wide(ax2, [h.train_loss for h in history])
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(run_dir / CURVE_FILE) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _log_if_wide(ax, values: list[float]) -> None:
    """A log axis only where the values span more than a factor of five (a plain axis, without an offset,
    reads easier)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() > 5 * v.min():
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")


@dataclass
class TrainedRun:
    """The outcome of :func:`train_in_run_dir`."""

    model: ElemNet
    fit: FitResult
    run_dir: Path


def train_in_run_dir(
    run_dir: Path,
    model: ElemNet,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    config: FitConfig,
    run_record: dict,
    *,
    device: torch.device,
    y_scale: float,
    resume: bool,
    param_groups: list[dict] | None = None,
    on_epoch: Callable[[EpochLog, TrainState], None] | None = None,
    save_every: float | None = None,
    checkpoint: bool = True,
    snapshot_every: float = 2.0,
) -> TrainedRun:
    """Fit with per-epoch metrics and a resumable state file in ``run_dir``.

    ``run_record`` (data hashes, options) is written to ``run.json``; ``--resume`` refuses to continue a
    run whose record differs. The state is saved every ``save_every`` seconds and, on Ctrl-C
    (``KeyboardInterrupt``), from an in-memory copy taken at an epoch end at most ``snapshot_every``
    seconds earlier. The state file is removed once the run has finished.
    """
    if save_every is None:
        save_every = default_save_every()
    state = None
    state_path = run_dir / STATE_FILE
    record_path = run_dir / RUN_FILE
    if resume and state_path.is_file():
        previous = json.loads(record_path.read_text()) if record_path.is_file() else None
        if previous is not None and jsonable(previous) != jsonable(run_record):
            raise InputError(f"{run_dir}: --resume with different data or options than the interrupted run "
                             f"({_what_differs(jsonable(previous), jsonable(run_record))})")
        state = load_state(state_path)
    write_json(record_path, run_record)
    last_save = [time.perf_counter()]
    saved_epoch = [state.epoch if state is not None else 0]
    snapshot: list = [None, time.perf_counter()]  # (copy of the state at an epoch end, when taken)

    def _on_epoch(log: EpochLog, st: TrainState) -> None:
        if on_epoch is not None:
            on_epoch(log, st)
        now = time.perf_counter()
        if checkpoint and not st.done and now - last_save[0] >= save_every:
            save_state(state_path, st)
            write_metrics(run_dir, st.history)
            last_save[0], saved_epoch[0] = now, st.epoch
        elif checkpoint and not st.done and now - snapshot[1] >= snapshot_every:
            snapshot[:] = [copy.deepcopy(st), now]  # the live weights move on during the next epoch

    x_tr, y_tr, x_va, y_va = data
    try:
        result = fit(model, x_tr, y_tr, x_va, y_va, config, device=device, param_groups=param_groups,
                     y_scale=y_scale, state=state, on_epoch=_on_epoch)
    except TrainingDiverged:
        state_path.unlink(missing_ok=True)  # resuming would only diverge again
        raise
    except KeyboardInterrupt:
        kept = snapshot[0]
        if kept is not None and kept.epoch > saved_epoch[0]:  # Ctrl-C: keep the latest epoch end
            save_state(state_path, kept)
            write_metrics(run_dir, kept.history)
        raise
    write_metrics(run_dir, result.history)
    return TrainedRun(model, result, run_dir)


def finish_run(run_dir: Path, model: ElemNet, info: ModelInfo, card: dict, history: list[EpochLog],
               best_epoch: int) -> None:
    """Write the model, the card and the learning curve; drop the resume state."""
    model_cpu = model.to("cpu")
    save_model(run_dir / MODEL_FILE, model_cpu, info)
    card.setdefault("model", {}).update({"arch": info.arch, "dropout": info.dropout,
                                         "parameters": count_parameters(model_cpu),
                                         "inputs": info.inputs, "sha256": sha256_of(run_dir / MODEL_FILE)})
    card["target"] = {"name": info.target, "unit": info.unit, "mean": info.target_mean, "std": info.target_std}
    write_json(run_dir / CARD_FILE, card)
    write_metrics(run_dir, history)
    if history:
        plot_learning_curve(run_dir, history, best_epoch, info.unit)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
