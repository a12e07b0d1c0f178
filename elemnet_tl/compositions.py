"""Formulas to ElemNet element fractions, and the polymorph dedup policy.

A composition is a row of 86 element fractions in :data:`elemnet_tl.elements.ELEMENTS` order
(rows sum to 1). Two formulas are the same composition when their fractions are equal:
Fe2O3, Fe4O6 and Fe0.4O0.6 are one composition.

Adducts and hydrates are written with ``·``, ``•``, ``∙`` or ``*``: ``CuSO4·5H2O`` is CuSO4 plus five
H2O, and each part may start with a count (``2Na2CO3·3H2O2``). With an ASCII dot, ``MgSO4.H2O`` is
read as a hydrate, but ``CaSO4.2H2O`` is rejected as ambiguous (pymatgen would read O4.2).

What pymatgen would misread is rejected with a reason: D and T (pymatgen reads them as H), scientific
notation in an amount (Fe1e3O), unicode subscripts and charges.
"""

from __future__ import annotations

import math
import re
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

ZERO_AMOUNT = 1e-8
"""Amounts below this are absent (pymatgen's ``Composition.amount_tolerance``): written explicitly, a rejection."""

ADDUCT_SEPARATORS = ("·", "•", "∙", "*")
"""Separators of adduct/hydrate parts: U+00B7, U+2022, U+2219 and the ASCII star."""

_ADDUCT_SPLIT = re.compile("|".join(map(re.escape, ADDUCT_SEPARATORS)))
_COUNT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)?\s*(.*?)\s*$", re.S)
# pymatgen's tokens: an element and its amount, or a closing bracket and the group's multiplier
_TOKEN = re.compile(r"([(\[{])|([)\]}])\s*([.e\d]*)|([A-Z][a-z]*)\s*([-*.e\d]*)")
_DOT_HYDRATE = re.compile(r"\.(\d+(?:\.\d+)?)?\s*(H2O)$")
# what ends the part before the dot: a symbol or closing bracket, then maybe an integer amount
_BEFORE_DOT = re.compile(r"([A-Z][a-z]*|[)\]}])\s*(\d*)$")
_SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
_ISOTOPES = {"D": "deuterium", "T": "tritium"}
_EXPONENT = re.compile(r"\d[\d.]*[eE][-+]?\d+")
"""An amount in scientific notation (``1e3``, ``1E-3``, ``1e+3``): no element symbol starts with a lowercase
letter, nor is ``E`` followed by a digit a symbol."""
_SUSPECT = re.compile(r"[DT](?![a-z])")
"""A symbol D or T: what :func:`_misread` looks at token by token."""


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


def _is_zero(amount: str) -> bool:
    """Whether an explicit amount string is zero (below :data:`ZERO_AMOUNT`); unreadable ones are not."""
    if not amount.strip():
        return False
    try:
        value = float(amount)
    except ValueError:
        return False  # pymatgen rejects it with its own message
    return abs(value) < ZERO_AMOUNT


def _zero_amounts(part: str) -> list[str]:
    """Elements and bracketed groups of one formula part written with a zero amount, e.g. ``Fe`` in Fe0O3."""
    zeros: list[str] = []
    opens: list[int] = []
    for m in _TOKEN.finditer(part):
        if m[1]:
            opens.append(m.start())
        elif m[2]:
            start = opens.pop() if opens else 0
            if _is_zero(m[3]):
                zeros.append(part[start:m.start() + 1])
        elif _is_zero(m[5]):
            zeros.append(m[4])
    return list(dict.fromkeys(zeros))


def _last_amount(before: str, end: re.Match[str]) -> str:
    """The element or bracketed group that ends ``before``, with its amount: ``O4``, ``(NO3)2``."""
    if end[1].isalpha():
        return end[0]
    depth = 0
    for i in range(end.start(), -1, -1):
        depth += (before[i] in ")]}") - (before[i] in "([{")
        if depth == 0:
            return before[i:]
    return end[0]


def _dot_hydrate(part: str) -> tuple[str, str | None]:
    """Read an ASCII-dot hydrate: ``(part, reason)``.

    ``MgSO4.H2O`` and ``CaSO4.0.5H2O`` have no other reading and become ``X·nH2O``; ``CaSO4.2H2O`` is
    rejected as ambiguous (pymatgen reads O4.2); ``Sr0.5H2O`` stays a fractional formula.
    """
    m = _DOT_HYDRATE.search(part)
    if m is None or m.start() == 0:
        return part, None
    before, count = part[:m.start()], m[1] or ""
    end = _BEFORE_DOT.search(before)
    if end is None or (end[2] and not end[2].strip("0")):
        return part, None  # Fe0.5Ni0.5.2H2O: pymatgen rejects it; Sr0.5H2O: Sr0 + 0.5 H2O is no compound
    if "." in count or not count:
        return f"{before}·{count}{m[2]}", None
    return part, (f"'{part}' is ambiguous (hydrate or {_last_amount(before, end)}.{count}?): "
                  f"write a hydrate as {before}·{count}{m[2]}")


def _misread(body: str) -> str | None:
    """Why ``body`` is rejected before pymatgen reads it (it would misread or word it as its own), or None."""
    if not body.isascii():
        if body.translate(_SUBSCRIPTS) != body:
            return f"unparseable formula {body!r}: unicode subscripts are not read, write {body.translate(_SUBSCRIPTS)}"
        odd = next((ch for ch in body if not ch.isascii() and not ch.isspace()), None)
        if odd is not None:  # unicode spaces (from spreadsheets, web pages) pymatgen reads as spaces
            return f"unparseable formula {body!r}: character {odd!r} is not read"
    exponent = _EXPONENT.search(body)
    if exponent:
        return (f"unparseable formula {body!r}: scientific notation in the amount {exponent[0]}, write a plain "
                "number")
    if "+" in body or body.endswith("-"):
        sign = "+" if "+" in body else "-"
        return f"unparseable formula {body!r}: {sign!r} (a charge?) is not read, write the neutral formula"
    if not _SUSPECT.search(body):  # the common case: no D or T anywhere
        return None
    for m in _TOKEN.finditer(body):
        if m[4] in _ISOTOPES:
            return (f"{m[4]} ({_ISOTOPES[m[4]]}): isotopes are not distinguished by ElemNet's element fractions; "
                    "write H to count it as hydrogen")
    return None


def _pymatgen_reason(body: str, exc: Exception) -> str:
    """pymatgen's complaint about ``body``, in our words."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if m := re.fullmatch(r"(.*) is an invalid formula!", detail):
        hint = " (element symbols start with a capital letter)" if m[1][:1].islower() else ""
        detail = f"cannot read {m[1]!r}{hint}"
    elif m := re.fullmatch(r"could not convert string to float: (.*)", detail):
        detail = f"the amount {m[1]} is not a number"
    elif detail.startswith("Invalid formula"):
        detail = "no element symbol read"
    elif "negative" in detail:
        detail = "negative amount"
    else:
        detail = f"not a chemical formula ({detail})"
    return f"unparseable formula {body!r}: {detail}"


def _parse_part(part: str, counted: bool) -> tuple[dict[str, float] | None, str | None]:
    """Element amounts of one formula part, or ``(None, reason)``. ``counted``: the part of an adduct may start
    with a count that multiplies the rest (``5H2O``)."""
    from pymatgen.core import Composition

    count, body = 1.0, part.strip()
    if counted:
        m = _COUNT.match(part)
        count, body = (1.0 if m[1] is None else float(m[1])), m[2]
        if not body:
            what = f"a count with no formula after it ({part.strip()!r})" if part.strip() else "an empty part"
            return None, f"unparseable formula: {what} in an adduct (write A·nB: the count before its formula)"
        if count < ZERO_AMOUNT:
            return None, f"zero amount (below {ZERO_AMOUNT:g}) of {body}"
    zeros = _zero_amounts(body)
    if zeros:
        return None, f"zero amount (below {ZERO_AMOUNT:g}) of {', '.join(zeros)}"
    reason = _misread(body)
    if reason:
        return None, reason
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            amounts = Composition(body).get_el_amt_dict()
    except Exception as exc:  # pymatgen raises ValueError, KeyError, ... on bad formulas
        return None, _pymatgen_reason(body, exc)
    return {el: amt * count for el, amt in amounts.items()}, None


def _amounts(text: str) -> tuple[dict[str, float] | None, str | None]:
    """Element amounts of a formula, adduct parts summed (``A·nB`` = A + n B), or ``(None, reason)``."""
    parts: list[str] = []
    for part in _ADDUCT_SPLIT.split(text):
        part, reason = _dot_hydrate(part)
        if reason:
            return None, reason
        parts.extend(_ADDUCT_SPLIT.split(part))
    total: dict[str, float] = {}
    for part in parts:
        amounts, reason = _parse_part(part, counted=len(parts) > 1)
        if amounts is None:
            return None, reason
        for el, amt in amounts.items():
            total[el] = total.get(el, 0.0) + amt
    return total, None


def _parse_one(formula: object) -> tuple[np.ndarray | None, str | None]:
    """Fractions of one formula, or ``(None, reason)``."""
    from pymatgen.core import Element

    if formula is None or (isinstance(formula, float) and math.isnan(formula)):
        return None, "empty formula"
    text = str(formula).strip()
    if not text:
        return None, "empty formula"
    amounts, reason = _amounts(text)
    if amounts is None:
        return None, reason
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
