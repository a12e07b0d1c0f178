"""ElemNet: a deep fully connected network on element fractions, with named layers."""

from __future__ import annotations

import os
import re

import numpy as np
import torch
from torch import nn

from .attributes import AttributeInputs, with_attributes
from .elements import N_ELEMENTS
from .errors import InputError

DEFAULT_ARCH = "1024x4-512x3-256x3-128x3-64x2-32x1"
"""ElemNet's hidden layers: 86 -> 1024x4 -> 512x3 -> 256x3 -> 128x3 -> 64x2 -> 32 -> 1 (17 weight layers)."""

_ARCH_RE = re.compile(r"^\d+x\d+(-\d+x\d+)*$")


def parse_arch(arch: str) -> list[int]:
    """``"1024x2-32x1"`` -> ``[1024, 1024, 32]`` (hidden widths; the output layer is implicit).

    A trailing ``-1`` (the output layer, as the study writes it) is accepted and ignored.
    """
    text = arch.strip().replace(" ", "")
    if text.endswith("-1"):
        text = text[:-2]
    if not _ARCH_RE.match(text):
        raise ValueError(f"architecture {arch!r} must look like '1024x4-512x3-...-32x1' "
                         "(width x count, dash-separated)")
    widths: list[int] = []
    for part in text.split("-"):
        width, count = (int(v) for v in part.split("x"))
        if width < 1 or count < 1:
            raise ValueError(f"architecture {arch!r}: widths and counts must be positive")
        widths.extend([width] * count)
    return widths


def check_network_options(arch: str, dropout: float) -> list[int]:
    """The hidden widths of ``arch``; :class:`InputError` for a bad architecture or dropout."""
    if not 0.0 <= float(dropout) < 1.0:
        raise InputError(f"--dropout must be in [0, 1), got {dropout:g}")
    return parse_arch(arch)


def check_trainable(arch: str) -> None:
    """:class:`InputError` when training a new network of ``arch`` would not fit in this machine's memory
    (float32 weights, gradients and the optimizer's two moments: 16 bytes a parameter)."""
    sizes = [N_ELEMENTS, *parse_arch(arch), 1]
    parameters = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    need, memory = parameters * 16, _physical_memory()
    if memory and need > memory:
        raise InputError(f"--arch {arch}: {parameters:,} parameters need about {need / 2**30:.3g} GiB to train; "
                         f"this machine has {memory / 2**30:.3g} GiB")


def _physical_memory() -> int | None:
    """Bytes of RAM, where the system says (None elsewhere)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


class ElemNet(nn.Module):
    """Element fractions in, one value out; ReLU between fully connected layers.

    Hidden layers are named ``fc1`` ... ``fcN`` and the output layer ``out``; freezing and feature
    extraction address layers by these names. :attr:`groups` gathers consecutive layers of one width
    (``g1`` = the four 1024-wide layers, ..., last group ``head`` = ``out``).
    With ``attributes``, Magpie physical attributes computed from the fractions also feed ``fc1``
    through :class:`~elemnet_tl.attributes.AttributeInputs` (``self.attributes``; None otherwise).
    """

    def __init__(self, arch: str = DEFAULT_ARCH, n_inputs: int = N_ELEMENTS, dropout: float = 0.0,
                 attributes: bool = False) -> None:
        super().__init__()
        self.arch = arch
        self.n_inputs = n_inputs
        widths = check_network_options(arch, dropout)
        self.dropout = float(dropout)
        layers: dict[str, nn.Linear] = {}
        fan_in = n_inputs
        for i, width in enumerate(widths, start=1):
            layers[f"fc{i}"] = nn.Linear(fan_in, width)
            fan_in = width
        layers["out"] = nn.Linear(fan_in, 1)
        self.layers = nn.ModuleDict(layers)
        self.widths = widths
        self.drop = nn.Dropout(self.dropout) if self.dropout > 0 else nn.Identity()
        self.attributes: AttributeInputs | None = AttributeInputs(widths[0]) if attributes else None
        self.reset_parameters()

    def add_attributes(self, fractions: np.ndarray) -> None:
        """Feed physical attributes to ``fc1`` too (statistics from the training ``fractions``; the new
        weights start at zero, so the network's predictions do not change)."""
        self.attributes = AttributeInputs(self.widths[0]).fit(fractions).to(self.layers["fc1"].weight.device)

    def drop_unused_attributes(self) -> None:
        """Remove the attribute input when training left its weights at zero (it changes nothing)."""
        if self.attributes is not None and not self.attributes.used():
            self.attributes = None

    def prepare(self, fractions: np.ndarray) -> np.ndarray:
        """The network's input matrix for ``(n, 86)`` fractions: themselves, plus the standardized
        attributes when the network reads them (computed once, e.g. before training)."""
        if self.attributes is None:
            return fractions
        return np.hstack([np.asarray(fractions, dtype=np.float32), self.attributes.standardized(fractions)])

    def _first(self, x: torch.Tensor) -> torch.Tensor:
        """``fc1``'s output, attributes included (``x``: fractions, or fractions + prepared attributes)."""
        if self.attributes is None:
            return self.layers["fc1"](x)
        x = with_attributes(x, self.attributes, self.n_inputs)
        return self.layers["fc1"](x[..., :self.n_inputs]) + self.attributes(x[..., self.n_inputs:])

    @property
    def layer_names(self) -> list[str]:
        """``fc1`` ... ``fcN``, ``out`` in forward order."""
        return list(self.layers.keys())

    @property
    def groups(self) -> dict[str, list[str]]:
        """Consecutive hidden layers of equal width form a group; the output layer is ``head``."""
        groups: dict[str, list[str]] = {}
        previous = None
        for name, width in zip(self.layer_names[:-1], self.widths):
            if width != previous:
                groups[f"g{len(groups) + 1}"] = []
                previous = width
            groups[list(groups)[-1]].append(name)
        groups["head"] = ["out"]
        return groups

    def reset_parameters(self, attributes: bool = False) -> None:
        """He (Kaiming) normal weights for ReLU layers, zero biases: keeps the signal alive through depth.

        The attribute input (if any) starts at zero, unused, unless ``attributes``: then it gets He weights
        too, as a first layer reading the attributes would (a fresh network trained with them, where a
        zero start leaves the deep network stalled at the mean for many epochs)."""
        for name, layer in self.layers.items():
            if name == "out":
                nn.init.xavier_normal_(layer.weight)
            else:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        if self.attributes is not None:
            if attributes:
                nn.init.kaiming_normal_(self.attributes.proj.weight, nonlinearity="relu")
            else:  # unused, as when first added
                nn.init.zeros_(self.attributes.proj.weight)

    def reset_head(self) -> None:
        """Fresh output layer (a new target)."""
        nn.init.xavier_normal_(self.layers["out"].weight)
        nn.init.zeros_(self.layers["out"].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.layers.items():
            x = self._first(x) if name == "fc1" else layer(x)
            if name != "out":
                x = self.drop(torch.relu(x))
        return x.squeeze(-1)

    @torch.no_grad()
    def activations(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Post-ReLU activations of the named hidden layers (``out`` gives the raw output)."""
        wanted = set(names)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise ValueError(f"unknown layer(s) {sorted(unknown)}; layers are {self.layer_names}")
        found: dict[str, torch.Tensor] = {}
        for name, layer in self.layers.items():
            x = self._first(x) if name == "fc1" else layer(x)
            if name != "out":
                x = torch.relu(x)
            if name in wanted:
                found[name] = x
            if len(found) == len(wanted):
                break
        return found


class ElemNetEnsemble(nn.Module):
    """Several ElemNets of one architecture, fine-tuned from the same start on different validation
    splits; predicts their mean. Layer names, groups and activations are those of the first member."""

    def __init__(self, members: list[ElemNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def first(self) -> ElemNet:
        return self.members[0]

    @property
    def arch(self) -> str:
        return self.first.arch

    @property
    def dropout(self) -> float:
        return self.first.dropout

    @property
    def layer_names(self) -> list[str]:
        return self.first.layer_names

    @property
    def groups(self) -> dict[str, list[str]]:
        return self.first.groups

    @property
    def attributes(self) -> AttributeInputs | None:
        return self.first.attributes

    def drop_unused_attributes(self) -> None:
        """Remove the attribute inputs when no member trained them."""
        if not any(m.attributes is not None and m.attributes.used() for m in self.members):
            for m in self.members:
                m.attributes = None

    def prepare(self, fractions: np.ndarray) -> np.ndarray:
        return self.first.prepare(fractions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_outputs(x).mean(0)

    def member_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's output, stacked: (members, rows)."""
        x = with_attributes(x, self.first.attributes, self.first.n_inputs)  # computed once for all members
        return torch.stack([m(x) for m in self.members])

    def activations(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        return self.first.activations(x, names)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
