"""Formulas to ElemNet element fractions, and the polymorph dedup policy.

A composition is a row of 86 element fractions in :data:`elemnet_tl.elements.ELEMENTS` order
(rows sum to 1). Two formulas are the same composition when their fractions are equal:
Fe2O3, Fe4O6 and Fe0.4O0.6 are one composition.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .elements import ELEMENT_INDEX, N_ELEMENTS

DUPLICATE_RULES = ("auto", "most-stable", "mean", "keep")
"""``--duplicates`` choices: see :func:`dedup`."""

KEY_DECIMALS = 8
"""Fractions are rounded to this many decimals to decide that two formulas are one composition."""


@dataclass(frozen=True)
class Parsed:
    """Element fractions of many formulas, with a reason for each one that failed."""

    fractions: np.ndarray
    """(n, 86) float64; rows of rejected formulas are all zero."""
    reasons: list[str | None]
    """``None`` where the formula parsed, else why it was rejected."""

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the formulas that parsed."""
        return np.array([r is None for r in self.reasons], dtype=bool)


def _parse_one(formula: object) -> tuple[np.ndarray | None, str | None]:
    """Fractions of one formula, or ``(None, reason)``."""
    from pymatgen.core import Composition, Element

    if formula is None or (isinstance(formula, float) and math.isnan(formula)):
        return None, "empty formula"
    text = str(formula).strip()
    if not text:
        return None, "empty formula"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            amounts = Composition(text).get_el_amt_dict()
    except Exception as exc:  # pymatgen raises ValueError, KeyError, ... on bad formulas
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"unparseable formula: {detail}"
    amounts = {el: amt for el, amt in amounts.items() if amt > 0}
    if not amounts:
        return None, "formula has no atoms"
    outside = [el for el in amounts if el not in ELEMENT_INDEX]
    if outside:
        known = [el for el in outside if Element.is_valid_symbol(el)]
        unknown = [el for el in outside if el not in known]
        parts = []
        if known:
            parts.append(f"element(s) {', '.join(known)} not among ElemNet's 86 elements")
        if unknown:
            parts.append(f"unknown element symbol(s) {', '.join(unknown)}")
        return None, "; ".join(parts)
    total = float(sum(amounts.values()))
    if not math.isfinite(total):
        return None, "formula has a non-finite amount"
    row = np.zeros(N_ELEMENTS)
    for el, amt in amounts.items():
        row[ELEMENT_INDEX[el]] = amt / total
    return row, None


def parse_formulas(formulas: Iterable[object]) -> Parsed:
    """Parse formulas with pymatgen into element fractions; each distinct string is parsed once."""
    formulas = list(formulas)
    cache: dict[object, tuple[np.ndarray | None, str | None]] = {}
    out = np.zeros((len(formulas), N_ELEMENTS))
    reasons: list[str | None] = []
    for i, f in enumerate(formulas):
        key = f if isinstance(f, str) else (type(f).__name__, repr(f))  # NaN must not share "nan"'s entry
        if key not in cache:
            cache[key] = _parse_one(f)
        row, reason = cache[key]
        if row is not None:
            out[i] = row
        reasons.append(reason)
    return Parsed(out, reasons)


def composition_keys(fractions: np.ndarray) -> np.ndarray:
    """Integer group id per row: equal ids mean equal compositions."""
    rounded = np.round(np.asarray(fractions, dtype=np.float64), KEY_DECIMALS)
    rounded += 0.0  # turn -0.0 into 0.0 so equal rows have equal bytes
    _, inverse = np.unique(rounded, axis=0, return_inverse=True)
    return inverse.reshape(-1)


@dataclass(frozen=True)
class DedupResult:
    """Which rows survive dedup and what their target becomes."""

    keep: np.ndarray
    """Indices (into the input) of the kept rows, in input order."""
    target: np.ndarray
    """Target of each kept row (the group mean under ``mean``)."""
    merged: np.ndarray
    """Indices of the rows merged into a kept row."""
    rule: str
    """The rule that ran: ``most-stable``, ``mean`` or ``keep``."""
    n_groups_merged: int
    """How many compositions had more than one row."""


def dedup(
    fractions: np.ndarray,
    target: np.ndarray,
    rule: str,
    stability: np.ndarray | None = None,
) -> DedupResult:
    """One row per composition.

    Rules:
      * ``most-stable``: keep the row with the lowest ``stability`` value (the target itself when
        ``stability`` is None: right for formation energies); ties keep the first row.
      * ``mean``: keep the first row of each composition, with the mean target of the group.
      * ``keep``: keep every row.
    """
    n = len(target)
    target = np.asarray(target, dtype=np.float64)
    if rule == "keep" or n == 0:
        return DedupResult(np.arange(n), target.copy(), np.array([], dtype=int), "keep", 0)
    if rule not in ("most-stable", "mean"):
        raise ValueError(f"unknown duplicate rule {rule!r}; choose from {DUPLICATE_RULES}")
    groups = composition_keys(fractions)
    order = np.arange(n)
    sizes = np.bincount(groups)
    if rule == "most-stable":
        score = target if stability is None else np.asarray(stability, dtype=np.float64)
        # NaN stability sorts last: a row with a known stability wins
        score = np.where(np.isnan(score), np.inf, score)
        ranked = np.lexsort((order, score, groups))  # by group, then score, then input order
        first = np.ones(n, dtype=bool)
        first[1:] = groups[ranked][1:] != groups[ranked][:-1]
        keep = np.sort(ranked[first])
        new_target = target[keep]
    else:
        sums = np.bincount(groups, weights=target)
        first_idx = pd.Series(order).groupby(groups).min().to_numpy()
        keep = np.sort(first_idx)
        new_target = (sums / sizes)[groups[keep]]
    merged = np.setdiff1d(order, keep)
    return DedupResult(keep, new_target, merged, rule, int((sizes > 1).sum()))
