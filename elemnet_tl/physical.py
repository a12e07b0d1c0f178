"""Magpie "general-purpose" physical attributes (PA) of Ward et al. (2016), vectorized.

The columns reproduce, value for value, what matminer computes with::

    MultipleFeaturizer([
        ElementProperty.from_preset("magpie"),  # 22 properties x 6 statistics = 132
        Stoichiometry(),                        # p-norms 0, 2, 3, 5, 7, 10     =   6
        ValenceOrbital(),                       # avg and frac of s, p, d, f    =   8
        IonProperty(),                          # PymatgenData, fast=False      =   3
    ])                                          #                               = 149

but on an ``(n, 86)`` matrix of element fractions (column ``i`` is
``elemnet_tl.elements.ELEMENTS[i]``) instead of one pymatgen ``Composition`` at a
time: 100k compositions take about a second instead of many minutes.

Public API: :func:`feature_labels` (column names: ``"pa_"`` + matminer's label with
every run of characters outside ``[0-9A-Za-z_]`` replaced by ``_``, e.g.
``"MagpieData mean Number"`` -> ``pa_MagpieData_mean_Number``, ``"0-norm"`` ->
``pa_0_norm``, ``"avg s valence electrons"`` -> ``pa_avg_s_valence_electrons``),
:func:`matminer_labels` (the original labels, same order), :func:`physical_attributes`,
:func:`physical_attributes_frame` and :func:`citations`.

Definitions (the weights ``w`` are the fractions of the elements present, the
values ``v`` one element property; identical to matminer's ``PropertyStats``):

* ``minimum``, ``maximum``, ``range``: over the elements present, unweighted.
* ``mean``: ``sum(w * v) / sum(w)``; ``avg_dev``: ``sum(w * |v - mean|) / sum(w)``.
* ``mode``: the value of the most abundant element; ties (``np.isclose`` on the
  amounts, as matminer does) go to the smallest value.
* ``p-norm``: ``(sum(w**p)) ** (1/p)`` with ``w`` normalised to sum 1; the 0-norm is
  the number of elements present.
* ``avg X valence electrons``: ``mean`` of ``NXValence``; ``frac X valence electrons``:
  that divided by the ``mean`` of ``NValence``.
* ``max ionic char``: ``1 - exp(-(X_A - X_B)**2 / 4)`` maximised over pairs of
  elements present (pymatgen's Pauling electronegativity ``X``, matminer's default
  ``PymatgenData``); ``avg ionic char``: ``sum_{A<B} w_A w_B I_AB`` (``w`` summing to 1).
  Both are 0 for a single element.
* ``compound possible``: 1.0 if the composition admits a charge-neutral assignment
  of oxidation states, else 0.0 (see below).

Element data come lazily (first call, then cached) from the installed matminer:
``MagpieData`` for the 22 Magpie properties and ``PymatgenData`` (matminer's default
``IonProperty`` source) for ``X`` and the common oxidation states. Nothing is read at
import time and no data are copied into this package.

Missing data. For the 86 ElemNet elements, matminer 0.10's Magpie tables and
pymatgen's ``X`` have no missing value, so matminer's ``impute_nan`` switch (default
True) changes nothing and the parity is exact. The tables are read with
``impute_nan=False``: should another matminer version lack a value, the statistic
is NaN wherever matminer's ``impute_nan=False`` gives NaN (any NaN among the present
elements for min/max/range/mean/avg_dev; a NaN among the tied most-abundant
elements for mode), and downstream models impute NaN with the training-set median.
See ``docs/physical_attributes.md``.

``compound possible`` (matminer ``IonProperty(fast=False)``) calls pymatgen's
``Composition.oxi_state_guesses`` with each element's common oxidation states,
which (i) raises for non-integer amounts, (ii) depends on the scale of the formula
(PdN: no, Pd2N2: yes) and (iii) is combinatorial. Here the fractions are first
turned into pymatgen's integer formula exactly as
``Composition.get_integer_formula_and_factor()`` does (``gcd_float`` with tolerance
1/10000, rounding, integer gcd reduction, pymatgen's special formulas such as
LiO -> Li2O2; an element whose amount rounds to 0 atoms drops out, as from
pymatgen's formula), and the existence of a neutral assignment for that formula is
decided exactly with per-element n-fold sumsets and their Minkowski sum (boolean
convolutions). The result equals matminer on ``Composition(integer_formula)``;
it is cached per integer formula. A one-element formula counts as possible.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from elemnet_tl.elements import ELEMENTS, N_ELEMENTS
from elemnet_tl.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "citations",
    "feature_labels",
    "matminer_labels",
    "physical_attributes",
    "physical_attributes_frame",
]

MAGPIE_PROPERTIES: tuple[str, ...] = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "GSvolume_pa",
    "GSbandgap",
    "GSmagmom",
    "SpaceGroupNumber",
)
"""Properties of matminer's ``ElementProperty.from_preset("magpie")``, in its order."""

MAGPIE_STATS: tuple[str, ...] = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
"""Statistics of the "magpie" preset, in matminer's order."""

P_NORMS: tuple[int, ...] = (0, 2, 3, 5, 7, 10)
"""matminer ``Stoichiometry`` default p-norms."""

ORBITALS: tuple[str, ...] = ("s", "p", "d", "f")
"""matminer ``ValenceOrbital`` default orbitals (props ``avg`` then ``frac``)."""

_AMOUNT_TOL = 1e-8  # pymatgen Composition.amount_tolerance: smaller amounts are dropped
_GCD_TOL = 1e-4  # 1 / max_denominator of pymatgen get_integer_formula_and_factor()
_CHUNK = 8192  # rows per vectorized block (bounds memory) ...
_CELLS = 65536  # ... and (row, element present) pairs per block
_FFT_MIN = 1 << 20  # len(a) * len(b) above which boolean convolutions use the FFT

_CITATIONS: tuple[str, ...] = (
    (
        "@article{ward_agrawal_choudary_wolverton_2016, title={A general-purpose machine "
        "learning framework for predicting properties of inorganic materials}, volume={2}, "
        "DOI={10.1038/npjcompumats.2016.28}, number={1}, journal={npj Computational "
        "Materials}, author={Ward, Logan and Agrawal, Ankit and Choudhary, Alok and "
        "Wolverton, Christopher}, year={2016}, pages={16028}}"
    ),
    (
        "@article{ward_matminer_2018, title={Matminer: An open source toolkit for materials "
        "data mining}, volume={152}, DOI={10.1016/j.commatsci.2018.05.018}, "
        "journal={Computational Materials Science}, author={Ward, Logan and Dunn, Alexander "
        "and Faghaninia, Alireza and Zimmermann, Nils E.R. and Bajaj, Saurabh and Wang, Qi "
        "and Montoya, Joseph and Chen, Jiming and Bystrom, Kyle and Dylla, Maxwell and "
        "Chard, Kyle and Asta, Mark and Persson, Kristin A. and Snyder, G. Jeffrey and "
        "Foster, Ian and Jain, Anubhav}, year={2018}, pages={60--69}}"
    ),
)


# --------------------------------------------------------------------------- labels


def matminer_labels() -> list[str]:
    """matminer's own feature labels, in the column order of :func:`feature_labels`."""
    labels = [f"MagpieData {stat} {prop}" for prop in MAGPIE_PROPERTIES for stat in MAGPIE_STATS]
    labels += [f"{p}-norm" for p in P_NORMS]
    labels += [f"{prop} {orb} valence electrons" for prop in ("avg", "frac") for orb in ORBITALS]
    labels += ["compound possible", "max ionic char", "avg ionic char"]
    return labels


def _sanitize(label: str) -> str:
    """``"pa_"`` + the matminer label with each run of non ``[0-9A-Za-z_]`` as ``_``."""
    return "pa_" + re.sub(r"[^0-9A-Za-z_]+", "_", label)


@functools.lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    return tuple(_sanitize(label) for label in matminer_labels())


def feature_labels() -> list[str]:
    """Column names, the single source of the column order (149 columns).

    Each is ``"pa_"`` + matminer's label with spaces and dashes as ``_``, e.g.
    ``pa_MagpieData_mean_Number``, ``pa_0_norm``, ``pa_frac_d_valence_electrons``,
    ``pa_compound_possible``, ``pa_max_ionic_char``.
    """
    return list(_labels())


def citations() -> list[str]:
    """BibTeX entries to cite: Ward et al. 2016 (Magpie) and matminer."""
    return list(_CITATIONS)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class _Tables:
    props: np.ndarray  # (86, 22) Magpie properties, NaN where missing
    x: np.ndarray  # (86,) pymatgen Pauling electronegativity
    ionic: np.ndarray  # (86, 86) 1 - exp(-(X_i - X_j)**2 / 4)
    oxi: tuple[tuple[int, ...], ...]  # oxidation states passed to oxi_state_guesses
    oxi_lo: np.ndarray  # (86,) min oxidation state (0 if none)
    oxi_hi: np.ndarray  # (86,) max oxidation state (0 if none)
    oxi_multi: np.ndarray  # (86,) bool: more than one state, or none at all
    special: dict[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


@functools.lru_cache(maxsize=1)
def _tables() -> _Tables:
    """Build the per-element tables from the installed matminer / pymatgen (once)."""
    from matminer.utils.data import MagpieData, PymatgenData
    from pymatgen.core import Composition, Element

    elements = [Element(symbol) for symbol in ELEMENTS]
    magpie = MagpieData(impute_nan=False)
    props = np.array(
        [[float(magpie.get_elemental_property(el, prop)) for prop in MAGPIE_PROPERTIES] for el in elements],
        dtype=np.float64,
    )
    pmg = PymatgenData(impute_nan=False)  # matminer IonProperty's default data source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for elements without X
        x = np.array([float(pmg.get_elemental_property(el, "X")) for el in elements], dtype=np.float64)
        oxi = []
        for el in elements:
            # IonProperty passes these as oxi_states_override; pymatgen falls back to
            # icsd / common states when an override is empty.
            states = pmg.get_oxidation_states(el) or el.icsd_oxidation_states or el.common_oxidation_states
            oxi.append(tuple(sorted({int(s) for s in states})))
    diff = x[:, None] - x[None, :]
    ionic = 1.0 - np.exp(-0.25 * diff**2)
    np.fill_diagonal(ionic, 0.0)
    oxi_lo = np.array([s[0] if s else 0 for s in oxi], dtype=np.int64)
    oxi_hi = np.array([s[-1] if s else 0 for s in oxi], dtype=np.int64)
    oxi_multi = np.array([len(s) != 1 for s in oxi], dtype=bool)

    index = {symbol: i for i, symbol in enumerate(ELEMENTS)}
    special: dict[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]] = {}
    for reduced, replacement in Composition.special_formulas.items():
        src = Composition(reduced).get_el_amt_dict()
        dst = Composition(replacement).get_el_amt_dict()
        if all(symbol in index for symbol in (*src, *dst)):
            special[tuple(sorted((index[s], round(n)) for s, n in src.items()))] = tuple(
                sorted((index[s], round(n)) for s, n in dst.items())
            )
    return _Tables(props, x, ionic, tuple(oxi), oxi_lo, oxi_hi, oxi_multi, special)


# --------------------------------------------------------------------------- compute


def _validate(fractions: np.ndarray) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != N_ELEMENTS:
        raise InputError(f"fractions must have shape (n, {N_ELEMENTS}), got {f.shape}")
    if not np.all(np.isfinite(f)):
        row = int(np.nonzero(~np.isfinite(f).all(axis=1))[0][0])
        raise InputError(f"fractions row {row} has a non-finite value")
    if np.any(f < 0):
        row = int(np.nonzero((f < 0).any(axis=1))[0][0])
        raise InputError(f"fractions row {row} has a negative value")
    f = np.where(f < _AMOUNT_TOL, 0.0, f)
    empty = ~(f > 0).any(axis=1)
    if np.any(empty):
        raise InputError(f"fractions row {int(np.nonzero(empty)[0][0])} has no element")
    return f


def physical_attributes(fractions: np.ndarray) -> np.ndarray:
    """Magpie physical attributes of each composition.

    Args:
        fractions: ``(n, 86)`` element fractions (column ``i`` is ``ELEMENTS[i]``);
            rows need not be normalised, amounts below 1e-8 count as absent
            (pymatgen's tolerance).

    Returns:
        ``(n, len(feature_labels()))`` float64 array; ``compound possible`` is 1.0/0.0.

    Raises:
        InputError: wrong shape, negative or non-finite values, or an empty row.
    """
    f = _validate(fractions)
    key = hashlib.sha1(np.ascontiguousarray(f).tobytes()).digest() + repr(f.shape).encode()
    if _last[0] == key:  # the training rows: once to fit the statistics, once as inputs
        return _last[1].copy()
    out = _compute(f)
    _last[:] = [key, out.copy()]
    return out


_last: list = [None, None]  # (key, attributes) of the last call


def _compute(f: np.ndarray) -> np.ndarray:
    tables = _tables()
    n = f.shape[0]
    out = np.empty((n, len(_labels())), dtype=np.float64)
    k = (f > 0).sum(axis=1)
    start = 0
    while start < n:  # blocks of at most _CHUNK rows and _CELLS (row, element) pairs
        stop = min(n, start + _CHUNK)
        stop = min(stop, start + max(1, _CELLS // int(k[start:stop].max())))
        out[start:stop] = _block(f[start:stop], tables)
        start = stop
    return out


def imputation_medians(attributes: np.ndarray) -> np.ndarray:
    """Per-column median of the finite values (0 for a column with none): the fill for missing attributes."""
    pa = np.where(np.isfinite(attributes), attributes, np.nan)
    med = np.zeros(pa.shape[1])
    seen = ~np.isnan(pa).all(axis=0) if len(pa) else np.zeros(pa.shape[1], dtype=bool)
    if seen.any():
        med[seen] = np.nanmedian(pa[:, seen], axis=0)
    return med


def impute(attributes: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``attributes`` with every non-finite value replaced by its column's ``fill``."""
    return np.where(np.isfinite(attributes), attributes, np.asarray(fill)[None, :])


def physical_attributes_frame(fractions: np.ndarray, index: pd.Index | None = None) -> pd.DataFrame:
    """:func:`physical_attributes` as a ``pandas.DataFrame`` with :func:`feature_labels` columns.

    ``index`` (optional) becomes the frame's index; default ``RangeIndex``.
    """
    import pandas as pd

    return pd.DataFrame(physical_attributes(fractions), columns=feature_labels(), index=index)


def _block(f: np.ndarray, t: _Tables) -> np.ndarray:
    """All attributes for one block of validated rows."""
    m = f.shape[0]
    present = f > 0
    k = present.sum(axis=1)
    kmax = int(k.max())
    # Compact form: the indices of the elements present first, in ELEMENTS order.
    order = np.argsort(~present, axis=1, kind="stable")[:, :kmax]
    valid = np.take_along_axis(present, order, axis=1)  # (m, kmax)
    amount = np.take_along_axis(f, order, axis=1)  # raw amounts, 0 for padding
    w = amount / amount.sum(axis=1, keepdims=True)

    vals = t.props[order]  # (m, kmax, P)
    v3 = valid[:, :, None]
    vmin = np.where(v3, vals, np.inf).min(axis=1)
    vmax = np.where(v3, vals, -np.inf).max(axis=1)
    vz = np.where(v3, vals, 0.0)
    mean = np.einsum("ik,ikp->ip", w, vz)
    avg_dev = np.einsum("ik,ikp->ip", w, np.where(v3, np.abs(vals - mean[:, None, :]), 0.0))
    amax = amount.max(axis=1, keepdims=True)
    tied = valid & np.isclose(amount, amax)
    mode = np.where(tied[:, :, None], vals, np.inf).min(axis=1)
    ep = np.stack([vmin, vmax, vmax - vmin, mean, avg_dev, mode], axis=2)  # (m, P, 6)

    norms = [k.astype(np.float64) if p == 0 else (w**p).sum(axis=1) ** (1.0 / p) for p in P_NORMS]

    col = {prop: j for j, prop in enumerate(MAGPIE_PROPERTIES)}
    avg = np.stack([mean[:, col[f"N{orb}Valence"]] for orb in ORBITALS], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = avg / mean[:, [col["NValence"]]]

    x = t.x[order]
    multi = k >= 2
    xr = np.where(valid, x, -np.inf).max(axis=1) - np.where(valid, x, np.inf).min(axis=1)
    max_ionic = np.where(multi, 1.0 - np.exp(-0.25 * xr**2), 0.0)
    pair = t.ionic[order[:, :, None], order[:, None, :]]
    pair = np.where(valid[:, :, None] & valid[:, None, :], pair, 0.0)
    avg_ionic = np.where(multi, 0.5 * np.einsum("ij,ijk,ik->i", w, pair, w), 0.0)

    cpd = _compound_possible(amount, valid, order, k, t)

    return np.concatenate(
        [
            ep.reshape(m, -1),
            np.stack(norms, axis=1),
            avg,
            frac,
            np.stack([cpd, max_ionic, avg_ionic], axis=1),
        ],
        axis=1,
    )


# --------------------------------------------------------------------------- charge balance


def _integer_counts(amount: np.ndarray, k: np.ndarray) -> np.ndarray:
    """pymatgen ``get_integer_formula_and_factor`` atom counts (before special formulas).

    ``amount`` is the compact ``(m, kmax)`` amounts in composition order, ``k`` the
    number present per row. Reproduces monty's ``gcd_float(values, 1/10000)``
    (pairwise Euclid with float remainder), ``round(value / gcd)`` and pymatgen's
    integer gcd reduction, vectorized over rows.
    """
    g = amount[:, 0].copy()
    for j in range(1, amount.shape[1]):
        rows = np.nonzero(k > j)[0]
        a = g[rows]
        b = amount[rows, j].copy()
        act = np.nonzero(b > _GCD_TOL)[0]
        while act.size:
            aa, bb = a[act], b[act]
            a[act] = bb
            b[act] = np.fmod(aa, bb)  # == Python's a % b for positive floats
            act = act[b[act] > _GCD_TOL]
        g[rows] = a
    counts = np.rint(amount / g[:, None]).astype(np.int64)  # round-half-even, like round()
    counts[amount == 0] = 0
    div = np.gcd.reduce(counts, axis=1)
    return counts // np.maximum(div, 1)[:, None]


def _compound_possible(
    amount: np.ndarray, valid: np.ndarray, order: np.ndarray, k: np.ndarray, t: _Tables
) -> np.ndarray:
    """1.0 where the integer formula of a row admits a neutral assignment, else 0.0."""
    counts = _integer_counts(amount, k)
    counts[~valid] = 0
    kc = (counts > 0).sum(axis=1)
    lo = (counts * t.oxi_lo[order]).sum(axis=1)
    hi = (counts * t.oxi_hi[order]).sum(axis=1)
    hard = ((counts > 0) & t.oxi_multi[order]).any(axis=1)
    # Outside [sum of minima, sum of maxima] no neutral assignment exists; with one
    # state per element the interval is a point and the test is exact.
    result = (lo <= 0) & (hi >= 0)
    result[kc <= 1] = True
    for i in np.nonzero(result & hard & (kc > 1))[0]:
        nz = np.nonzero(counts[i])[0]
        key = tuple(sorted(zip(order[i, nz].tolist(), counts[i, nz].tolist(), strict=True)))
        key = t.special.get(key, key)
        result[i] = _neutral(key)
    return result.astype(np.float64)


_NEUTRAL_CACHE: dict[tuple[tuple[int, int], ...], bool] = {}


def _neutral(formula: tuple[tuple[int, int], ...]) -> bool:
    """Whether ``((element index, atom count), ...)`` admits a total oxidation state of 0.

    Exact: 0 must lie in the Minkowski sum of the per-element n-fold sumsets.
    """
    hit = _NEUTRAL_CACHE.get(formula)
    if hit is None:
        sets = [_nfold_sumset(element, count) for element, count in formula]
        if any(mask is None for _, mask in sets):
            hit = False
        else:
            sets.sort(key=lambda lo_mask: lo_mask[1].size)
            lo, mask = 0, np.ones(1, dtype=bool)
            for s_lo, s_mask in sets[:-1]:
                lo, mask = lo + s_lo, _bool_convolve(mask, s_mask)
            hit = _sums_to_zero(lo, mask, *sets[-1])
        if len(_NEUTRAL_CACHE) > 1_000_000:
            _NEUTRAL_CACHE.clear()
        _NEUTRAL_CACHE[formula] = hit
    return hit


def _sums_to_zero(lo_a: int, a: np.ndarray, lo_b: int, b: np.ndarray) -> bool:
    """Whether some ``lo_a + i`` (``a[i]``) plus some ``lo_b + j`` (``b[j]``) is 0."""
    s = -(lo_a + lo_b)  # need i + j == s
    i0, i1 = max(0, s - b.size + 1), min(a.size - 1, s)
    if i0 > i1:
        return False
    rev = b[::-1]  # rev[b.size - 1 - j] == b[j]
    off = b.size - 1 - s
    return bool(np.any(a[i0 : i1 + 1] & rev[off + i0 : off + i1 + 1]))


@dataclass(frozen=True)
class _Structure:
    """How the n-fold sumset of one element's oxidation states looks for large n.

    In reduced units (states ``base + step * A`` with ``A`` in ``[0, m]``, gcd 1), for
    ``n >= n_min``: ``nA = (P & [0, L)) | [L, nm - L] | (nm - (Q & [0, L)))`` where ``P``
    and ``Q`` are the numerical semigroups generated by ``A`` and ``m - A``.
    """

    base: int
    step: int
    unit: np.ndarray  # mask of A over [0, m]
    n_min: int  # 0: no closed form (single state)
    low: np.ndarray  # P over [0, L)
    high: np.ndarray  # Q over [0, L)


def _semigroup(unit: np.ndarray, size: int) -> np.ndarray:
    """Mask over ``[0, size)`` of all finite sums of the elements of ``unit``."""
    gens = [int(a) for a in np.nonzero(unit)[0] if a > 0]
    mask = np.zeros(size, dtype=bool)
    mask[0] = True
    for x in range(1, size):
        mask[x] = any(x >= a and mask[x - a] for a in gens)
    return mask


def _conductor(mask: np.ndarray) -> int:
    """Smallest ``c`` with ``mask[c:]`` all true."""
    holes = np.nonzero(~mask)[0]
    return int(holes[-1]) + 1 if holes.size else 0


@functools.cache
def _structure(element: int) -> _Structure | None:
    """Closed form of the large-n sumsets of ``element`` (None: no oxidation state).

    For ``n >= L`` the parts below ``L`` and above ``nm - L`` are exactly the semigroup
    parts (a sum of fewer than ``L`` nonzero states pads with zeros), and if the middle
    ``[L, nm - L]`` is full for ``n`` with ``nm >= 2L + m - 1``, then ``nA + {0, m}``
    makes it full for ``n + 1``. So checking the form once at ``n_min`` proves it for
    every larger ``n``; it holds from some ``n`` on when ``L`` is at least both
    semigroups' conductors (structure theorem for sumsets, Nathanson 1972).
    """
    states = _tables().oxi[element]
    if not states:
        return None
    base = states[0]
    shifted = [s - base for s in states]
    step = math.gcd(*shifted) or 1
    m = shifted[-1] // step
    unit = np.zeros(m + 1, dtype=bool)
    unit[[s // step for s in shifted]] = True
    unit.setflags(write=False)
    empty = np.zeros(0, dtype=bool)
    if m == 0:
        return _Structure(base, step, unit, 0, empty, empty)
    size = 2 * m * m + 2  # > Frobenius bound (m - 1)**2 of both semigroups
    p_mask, q_mask = _semigroup(unit, size), _semigroup(unit[::-1], size)
    big = max(_conductor(p_mask), _conductor(q_mask), 1)
    n = max(big, -(-(2 * big + m - 1) // m))
    cur = _power(unit, n)
    for _ in range(10_000):
        nm = n * m
        if (
            np.array_equal(cur[:big], p_mask[:big])
            and cur[big : nm - big + 1].all()
            and np.array_equal(cur[nm - big + 1 :][::-1], q_mask[:big])
        ):
            return _Structure(base, step, unit, n, p_mask[:big].copy(), q_mask[:big].copy())
        cur, n = _bool_convolve(cur, unit), n + 1
    return _Structure(base, step, unit, 0, empty, empty)  # not reached in practice


def _power(unit: np.ndarray, count: int) -> np.ndarray:
    """``count``-fold sumset of a mask by binary powering (exact)."""
    result, power, n = np.ones(1, dtype=bool), unit, count
    while n:
        if n & 1:
            result = _bool_convolve(result, power)
        n >>= 1
        if n:
            power = _bool_convolve(power, power)
    return result


@functools.lru_cache(maxsize=65536)
def _nfold_sumset(element: int, count: int) -> tuple[int, np.ndarray | None]:
    """All sums of ``count`` oxidation states of ``element`` (with repetition).

    Returns ``(lo, mask)`` with ``mask[j]`` true iff ``lo + j`` is such a sum (the
    sums pymatgen enumerates with ``combinations_with_replacement``), or
    ``(0, None)`` if the element has no oxidation state.
    """
    st = _structure(element)
    if st is None:
        return 0, None
    m = st.unit.size - 1
    if st.n_min and count >= st.n_min:
        big = st.low.size
        reduced = np.ones(count * m + 1, dtype=bool)
        reduced[:big] = st.low
        reduced[count * m - big + 1 :] = st.high[::-1]
    else:
        reduced = _power(st.unit, count)
    mask = np.zeros((reduced.size - 1) * st.step + 1, dtype=bool)
    mask[:: st.step] = reduced
    mask.setflags(write=False)
    return count * st.base, mask


def _bool_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sumset of two index sets given as boolean masks."""
    if a.size * b.size <= _FFT_MIN:
        return np.convolve(a.astype(np.int64), b.astype(np.int64)) > 0
    n = a.size + b.size - 1
    size = 1 << (n - 1).bit_length()
    prod = np.fft.rfft(a.astype(np.float64), size) * np.fft.rfft(b.astype(np.float64), size)
    return np.fft.irfft(prod, size)[:n] > 0.5
