"""Pretrain ElemNet on a large DFT set (formation energy by default)."""

from __future__ import annotations

from pathlib import Path

import torch

from .datasets import check_source, run_folder
from .errors import InputError
from .model import DEFAULT_ARCH, ElemNet, check_network_options, check_trainable
from .runs import check_run_dir
from .training import FitConfig, resolve_device
from .workflow import RunResult, load_training_inputs, run_training

PRETRAIN_DEFAULTS = FitConfig(epochs=120, batch_size=512, lr=1e-3, weight_decay=1e-4, warmup=0.05, final_lr=0.01,
                              patience=30, seed=0)
"""The pretraining recipe (see docs/benchmarks.md for how it was chosen)."""


def default_patience(epochs: int) -> int:
    """Early-stopping patience for a schedule of ``epochs``: 30, or a quarter of a longer schedule.

    Over a long cosine schedule the rate stays high for many epochs and the validation MAE wanders;
    a fixed 30 stopped a 400-epoch run at epoch 172, before the decay (docs/benchmarks.md, On a GPU).
    """
    return max(PRETRAIN_DEFAULTS.patience, epochs // 4)


def pretrain(
    data: str | Path,
    run_dir: str | Path,
    *,
    val: str | Path | None = None,
    test: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    arch: str = DEFAULT_ARCH,
    dropout: float = 0.0,
    config: FitConfig | None = None,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    duplicates: str = "most-stable",
    formula_col: str | None = None,
    target_col: str | None = None,
    stability_col: str | None = None,
    init: str | Path | None = None,
    attributes: bool = False,
    show_progress: bool = True,
    notices: bool | None = None,
) -> RunResult:
    """Train ElemNet from scratch on ``data`` and write a run directory.

    Duplicates default to ``most-stable`` (lowest value per composition: pretraining data is a
    formation energy). ``init`` (a run directory or ``bundled``) starts from that model's weights
    instead of fresh ones, e.g. to continue a model pretrained on one DFT set on another (its output
    layer is rescaled to the new target's standardization). ``attributes``: Magpie physical attributes
    (computed from the fractions) also feed the first layer, as in a ``+pa`` fine-tune; a model that
    reads them (``init``'s too) trains that input with the rest. ``notices``: print the data summary, the result,
    rejected-row files and warnings (default: ``show_progress``). Returns the :class:`RunResult`.
    """
    config = config or PRETRAIN_DEFAULTS
    config.check_resolved()
    init = run_folder(init)  # a pretrain/finetune result: its run directory
    check_source(init, "init", "'bundled', 'bundled:NAME' or a run directory")
    resolve_device(device)  # a bad --device fails before anything is read or written
    if init is None:
        check_network_options(arch, dropout)  # so does a bad --arch or --dropout
        check_trainable(arch)
    elif arch != DEFAULT_ARCH or dropout:
        raise InputError("--init starts from that model's network, its architecture and dropout too: leave out "
                         "--arch and --dropout")
    check_run_dir(run_dir, resume, overwrite)  # and an output that holds a run, before a large set is read
    inputs = load_training_inputs(data, val=val, test=test, val_fraction=val_fraction,
                                  test_fraction=test_fraction, seed=config.seed,
                                  duplicates=duplicates, formula_col=formula_col, target_col=target_col,
                                  stability_col=stability_col)
    torch.manual_seed(config.seed)
    extra = None
    if init is None:
        model = ElemNet(arch, dropout=dropout)
    else:
        model, extra = _initial_model(init, inputs.arrays()[1])
    if attributes and model.attributes is None:
        model.add_attributes(inputs.arrays()[0])
    result = run_training(run_dir, model, inputs, config, command="pretrain", device=device, resume=resume,
                          overwrite=overwrite, extra_card=extra, show_progress=show_progress, notices=notices)
    if show_progress if notices is None else notices:
        result.print_summary()
    return result


def _initial_model(init: str | Path, y_train) -> tuple[ElemNet, dict]:
    """The network of ``init``, its head rescaled to ``y_train``'s scaler, and the card record."""
    from .checkpoint import load_start_network
    from .finetune import rescale_head
    from .training import standardize

    model, loaded, record = load_start_network(init)
    rescale_head(model, loaded.info.target_mean, loaded.info.target_std, *standardize(y_train))
    return model, {"init_model": record}
