"""Physical attributes as a second input of a fine-tuned ElemNet.

A pretrained ElemNet reads element fractions only. For a small target where Magpie physical attributes
carry information the pretrained representation lacks, :class:`AttributeInputs` adds them to the first
hidden layer: ``fc1(fractions) + W · standardized attributes``, with ``W`` starting at zero so the
network starts exactly as pretrained and learns how much to use them. The attributes are computed from
the fractions (:mod:`elemnet_tl.physical`), missing values filled with the training median and
standardized on the training rows; these statistics are buffers, saved with the weights.

A standardized attribute is kept within its training range widened by that range on each side: an attribute
that hardly varies in training (``mean_GSmagmom`` over compounds of Ti and Sc, whose tabulated moments are
1e-5) would otherwise reach z-scores of 1e5 for an Fe compound and the network's output with it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .elements import N_ELEMENTS


def attribute_count() -> int:
    """Number of Magpie attributes (149)."""
    from .physical import feature_labels

    return len(feature_labels())


def standardizer(attributes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fill, mean, std)`` from training attributes: median fill for missing values, then z-scores
    (std 1 for constant columns)."""
    from .physical import imputation_medians, impute

    fill = imputation_medians(attributes)
    filled = impute(attributes, fill)
    mean = filled.mean(axis=0) if len(filled) else np.zeros(attributes.shape[1])
    std = filled.std(axis=0) if len(filled) else np.ones(attributes.shape[1])
    return fill, mean, np.where(std > 1e-12, std, 1.0)


UNBOUNDED = 1e300
"""The bounds of an attribute input saved before bounds were kept (no clipping; finite, as weights must be)."""


def scale(attributes: np.ndarray, fill: np.ndarray, mean: np.ndarray, std: np.ndarray,
          lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
    """Missing values filled, then z-scored with the given training statistics; with the training rows'
    z-score range ``lo``..``hi``, kept within ``lo - (hi - lo)``..``hi + (hi - lo)``."""
    from .physical import impute

    z = (impute(attributes, fill) - mean) / std
    return z if lo is None or hi is None else near_range(z, lo, hi)


def near_range(z: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``z`` kept within ``lo - (hi - lo)``..``hi + (hi - lo)`` per column (the training range widened by
    itself on each side; a constant column stays at its value): the bound of every scaled input."""
    width = hi - lo
    return np.clip(z, lo - width, hi + width)


def bounds(scaled_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) of the training rows' standardized attributes (zeros without rows)."""
    if len(scaled_train) == 0:
        return np.zeros(scaled_train.shape[1]), np.zeros(scaled_train.shape[1])
    return scaled_train.min(axis=0), scaled_train.max(axis=0)


def standardized_attributes(train_fractions: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Physical attributes (float64) of each fraction matrix, filled and standardized with the training
    rows' statistics and kept near the training range (:func:`scale`)."""
    from .physical import physical_attributes

    train = physical_attributes(np.asarray(train_fractions, dtype=np.float64))
    stats = standardizer(train)
    scaled = scale(train, *stats)
    limits = bounds(scaled)
    return [scaled] + [scale(physical_attributes(np.asarray(f, dtype=np.float64)), *stats, *limits)
                       for f in others]


class AttributeInputs(nn.Module):
    """Standardized physical attributes, mapped linearly (no bias) onto the first hidden layer; the map
    starts at zero. Buffers ``fill``, ``mean``, ``std`` hold the training statistics, ``lo``, ``hi`` the
    training rows' z-score range (:data:`UNBOUNDED` in a model saved without them)."""

    def __init__(self, width: int, n_attributes: int | None = None) -> None:
        super().__init__()
        n = attribute_count() if n_attributes is None else n_attributes
        self.register_buffer("fill", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n, dtype=torch.float64))
        self.register_buffer("lo", torch.full((n,), -UNBOUNDED, dtype=torch.float64))
        self.register_buffer("hi", torch.full((n,), UNBOUNDED, dtype=torch.float64))
        self.proj = nn.Linear(n, width, bias=False)
        nn.init.zeros_(self.proj.weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        """Weights saved before the bounds were kept load unbounded, as they were trained."""
        for name, value in (("lo", -UNBOUNDED), ("hi", UNBOUNDED)):
            state_dict.setdefault(prefix + name, torch.full_like(getattr(self, name), value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def n_attributes(self) -> int:
        return int(self.proj.in_features)

    def fit(self, fractions: np.ndarray) -> AttributeInputs:
        """Set the fill/standardization statistics from training fractions."""
        from .physical import physical_attributes

        pa = physical_attributes(np.asarray(fractions, dtype=np.float64))
        stats = standardizer(pa)
        for name, value in zip(("fill", "mean", "std", "lo", "hi"), (*stats, *bounds(scale(pa, *stats)))):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float64))
        return self

    def standardized(self, fractions: np.ndarray) -> np.ndarray:
        """``(n, n_attributes)`` float32 standardized attributes of ``fractions``."""
        from .physical import physical_attributes

        if len(fractions) == 0:
            return np.zeros((0, self.n_attributes), dtype=np.float32)
        pa = physical_attributes(np.asarray(fractions, dtype=np.float64))
        stats = (t.detach().cpu().numpy() for t in (self.fill, self.mean, self.std, self.lo, self.hi))
        return scale(pa, *stats).astype(np.float32)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Fractions ``(n, 86)`` -> fractions and standardized attributes ``(n, 86 + n_attributes)``."""
        pa = self.standardized(x.detach().cpu().double().numpy())
        return torch.cat([x, torch.as_tensor(pa, device=x.device).to(x.dtype)], dim=-1)

    def used(self) -> bool:
        """Whether the map was trained away from zero (otherwise the attributes change nothing)."""
        return bool(self.proj.weight.detach().abs().max() > 0)

    def forward(self, attributes: torch.Tensor) -> torch.Tensor:
        return self.proj(attributes)


def complete_state(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Saved weights plus the attribute bounds a model saved before they were kept lacks (unbounded, as it
    was trained), so that it loads as it was."""
    missing = {k: v for k, v in expected.items()
               if k not in tensors and k.rsplit(".", 2)[-2:] in (["attributes", "lo"], ["attributes", "hi"])}
    return {**tensors, **{k: v.detach().clone() for k, v in missing.items()}} if missing else tensors


def with_attributes(x: torch.Tensor, module: AttributeInputs | None, n_inputs: int = N_ELEMENTS) -> torch.Tensor:
    """Fraction inputs expanded with the attributes when ``module`` is set and they are not there yet."""
    if module is None or x.shape[-1] != n_inputs:
        return x
    return module.expand(x)
