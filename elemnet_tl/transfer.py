"""Transfer strategies: which layers train, at which learning rates, in which phases.

Strategies, as users know them:
  * ``full``      all layers from the pretrained weights, small learning rate;
  * ``freeze:K``  the first K weight layers frozen, the rest trained;
  * ``head``      only the output layer trained;
  * ``reinit``    architecture only, fresh weights (the from-scratch control);
  * ``gradual``   head first, then everything with discriminative learning rates (lower for early
                  layers), as fastai's ``fine_tune`` does; the optimizer state is reset between phases.

Any of them with ``+pa`` (e.g. ``full+pa``) also feeds Magpie physical attributes to the first layer
(:mod:`elemnet_tl.attributes`): new weights, starting at zero, trained in every phase.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from .model import ElemNet
from .training import FitConfig

STRATEGY_NAMES = ("auto", "full", "freeze:K", "head", "reinit", "gradual")
WITH_ATTRIBUTES = "+pa"
"""Suffix of a strategy that also reads physical attributes."""
LR_MULT = 10.0
"""gradual: the first layer group learns LR_MULT times slower than the head."""
HEAD_LR_SCALE = 5.0
"""head-only training uses a larger learning rate: few parameters, nothing to preserve."""


@dataclass(frozen=True)
class Strategy:
    name: str
    k: int = 0
    attributes: bool = False

    def __str__(self) -> str:
        base = f"freeze:{self.k}" if self.name == "freeze" else self.name
        return base + (WITH_ATTRIBUTES if self.attributes else "")


def parse_strategy(text: str, n_layers: int | None = 17) -> Strategy:
    """``full`` | ``freeze:K`` | ``head`` | ``reinit`` | ``gradual`` | ``auto``, any but ``auto`` with
    ``+pa``. ``n_layers`` None: the spelling only (K ≥ 1; its upper bound needs the model)."""
    if not isinstance(text, str):
        raise ValueError(f"--strategy must be a name such as auto or full, got {text!r}")
    text = text.strip().lower()
    if text.endswith(WITH_ATTRIBUTES):
        base = parse_strategy(text[:-len(WITH_ATTRIBUTES)], n_layers)
        if base.name == "auto":
            raise ValueError("--strategy auto+pa: auto already tries full+pa; use --strategy auto")
        if base.attributes:
            raise ValueError(f"--strategy {text!r}: {WITH_ATTRIBUTES} at most once")
        return replace(base, attributes=True)
    match = re.fullmatch(r"freeze:(\d+)", text)
    if match:
        k = int(match.group(1))
        if n_layers is None and k < 1:
            raise ValueError(f"--strategy {text}: K must be at least 1 (K = 0 freezes nothing: use full)")
        if n_layers is not None and not 0 < k < n_layers:
            raise ValueError(f"--strategy {text}: K must be between 1 and {n_layers - 1} (the model has "
                             f"{n_layers} weight layers)")
        return Strategy("freeze", k)
    if text in ("auto", "full", "head", "reinit", "gradual"):
        return Strategy(text)
    raise ValueError(f"--strategy {text!r}: choose from {', '.join(STRATEGY_NAMES)} (any but auto may end in "
                     f"{WITH_ATTRIBUTES})")


@dataclass
class Phase:
    """One fit with a given set of trainable layers and learning-rate scales."""

    name: str
    config: FitConfig
    param_groups: Callable[[ElemNet], list[dict]]


def set_trainable(model: ElemNet, layers: list[str]) -> None:
    """Only the named layers train (the attribute input, if any, stays as it is)."""
    wanted = set(layers)
    for name, layer in model.layers.items():
        for p in layer.parameters():
            p.requires_grad_(name in wanted)
    if model.attributes is not None:
        model.attributes.proj.weight.requires_grad_(False)


def plus_attributes(build: Callable[[ElemNet], list[dict]]) -> Callable[[ElemNet], list[dict]]:
    """``build``'s groups plus the attribute input's weights at the base learning rate."""

    def with_pa(model: ElemNet) -> list[dict]:
        if model.attributes is None:
            raise ValueError("a +pa strategy needs a network with attribute inputs (ElemNet.add_attributes)")
        groups = build(model)
        model.attributes.proj.weight.requires_grad_(True)
        return groups + [{"params": [model.attributes.proj.weight], "lr_scale": 1.0}]

    return with_pa


def layers_groups(layers: list[str], scale: float = 1.0) -> Callable[[ElemNet], list[dict]]:
    """Train ``layers`` at ``scale`` x the base learning rate; freeze the rest."""

    def build(model: ElemNet) -> list[dict]:
        set_trainable(model, layers)
        params = [p for name in layers for p in model.layers[name].parameters()]
        return [{"params": params, "lr_scale": scale}]

    return build


def discriminative_groups(lr_mult: float = LR_MULT) -> Callable[[ElemNet], list[dict]]:
    """All layers train; group ``i`` of ``G`` gets ``lr_mult ** (-(G-1-i)/(G-1))`` x the base rate."""

    def build(model: ElemNet) -> list[dict]:
        set_trainable(model, model.layer_names)
        groups = list(model.groups.values())
        last = max(1, len(groups) - 1)
        return [{"params": [p for name in names for p in model.layers[name].parameters()],
                 "lr_scale": lr_mult ** (-(last - i) / last)} for i, names in enumerate(groups)]

    return build


FRESH_MIN_FRACTION = 0.6
FRESH_PATIENCE_FRACTION = 0.4


def fresh_network_config(config: FitConfig) -> FitConfig:
    """Training options for a network from fresh weights (``config.epochs`` resolved): at least 60 % of
    the epoch budget, then stop once 40 % of it passes without a better validation MAE; keep the best
    epoch. A fresh deep network can sit at the target mean for many epochs before it learns, and the
    pretrained starts' patience (20 epochs) ended some there; replayed on 102 whole-budget fresh-network
    validation curves, this rule kept the best epoch of all but one (0.6 % worse) and ran ~19 % fewer
    epochs (docs/benchmarks.md)."""
    config.check_resolved()
    return replace(config, min_epochs=math.ceil(FRESH_MIN_FRACTION * config.epochs),
                   patience=max(1, math.ceil(FRESH_PATIENCE_FRACTION * config.epochs)))


def strategy_phases(strategy: Strategy, model: ElemNet, base: FitConfig) -> list[Phase]:
    """The fits a strategy runs, starting from ``model``'s current (pretrained) weights.

    ``reinit`` re-initialises every layer here (with ``+pa`` the attribute input too) and trains as
    :func:`fresh_network_config` says. With ``+pa`` every phase also trains the attribute input.
    """
    phases = _phases(strategy, model, base)
    if strategy.attributes:
        phases = [replace(p, name=p.name + WITH_ATTRIBUTES, param_groups=plus_attributes(p.param_groups))
                  for p in phases]
    return phases


def _phases(strategy: Strategy, model: ElemNet, base: FitConfig) -> list[Phase]:
    names = model.layer_names
    if strategy.name == "full":
        return [Phase("full", base, layers_groups(names))]
    if strategy.name == "reinit":
        model.reset_parameters(attributes=strategy.attributes)
        return [Phase("reinit", fresh_network_config(base), layers_groups(names))]
    if strategy.name == "freeze":
        return [Phase(str(strategy), base, layers_groups(names[strategy.k:]))]
    if strategy.name == "head":
        return [Phase("head", base, layers_groups(["out"], HEAD_LR_SCALE))]
    if strategy.name == "gradual":
        head_epochs = max(2, base.epochs // 10)
        head = replace(base, epochs=head_epochs, patience=0, warmup=0.1)
        return [Phase("gradual/head", head, layers_groups(["out"], HEAD_LR_SCALE)),
                Phase("gradual/all", base, discriminative_groups())]
    raise ValueError(f"strategy {strategy} has no phases (auto is resolved before training)")
