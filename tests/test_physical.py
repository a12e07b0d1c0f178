"""Tests of elemnet_tl.physical: parity with matminer's own featurizers, hand checks."""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from itertools import combinations_with_replacement

import numpy as np
import pytest

from elemnet_tl import physical as ph
from elemnet_tl.elements import ELEMENT_INDEX, ELEMENTS, N_ELEMENTS
from elemnet_tl.errors import InputError

FIXED = [
    {"Fe": 2, "O": 3},
    {"Na": 1, "Cl": 1},
    {"Fe": 3, "O": 4},
    {"Al": 2, "O": 3},
    {"Fe": 0.7, "Cr": 0.18, "Ni": 0.12},
    {"Cu": 1},
    {"Pd": 1, "N": 1},
    {"Li": 1, "O": 1},  # pymatgen special formula Li2O2
    {"H": 2, "O": 2},
    {"Mn": 3, "O": 4},
    {"C": 1, "H": 4},
    {"Si": 1, "C": 1},
    {"Fe": 1, "Ni": 1},
    {"Kr": 1, "F": 2},
    {"Ba": 1, "Ti": 1, "O": 3},
    {"La": 0.5, "Sr": 0.5, "Mn": 1, "O": 3},
    {"Pu": 1, "O": 2},
]


def _row(amounts: dict[str, float]) -> np.ndarray:
    row = np.zeros(N_ELEMENTS)
    for symbol, amount in amounts.items():
        row[ELEMENT_INDEX[symbol]] = amount
    return row / row.sum()


def _pymatgen_work(amounts: dict[str, int]) -> int:
    """Rough size of pymatgen's product over per-element oxidation-sum lists."""
    size = 1
    for symbol, n in amounts.items():
        states = ph._tables().oxi[ELEMENT_INDEX[symbol]]
        size *= n * (states[-1] - states[0]) + 1
    return size


def _random_compositions(count: int, seed: int = 20161) -> list[dict[str, int]]:
    """Deterministic random compositions: 1-5 elements, amounts 1-4.

    Compositions on which pymatgen's oxi_state_guesses would be slow (large products
    of per-element sum lists) are skipped, to keep the reference computation fast.
    """
    rng = np.random.default_rng(seed)
    comps: list[dict[str, int]] = []
    while len(comps) < count:
        k = int(rng.integers(1, 6))
        symbols = rng.choice(len(ELEMENTS), size=k, replace=False)
        amounts = {ELEMENTS[i]: int(a) for i, a in zip(symbols, rng.integers(1, 5, size=k), strict=True)}
        if _pymatgen_work(amounts) <= 20_000:
            comps.append(amounts)
    return comps


@pytest.fixture(scope="module")
def compositions() -> list[dict[str, float]]:
    return FIXED + _random_compositions(300)


@pytest.fixture(scope="module")
def fractions(compositions) -> np.ndarray:
    return np.array([_row(c) for c in compositions])


@pytest.fixture(scope="module")
def ours(fractions) -> np.ndarray:
    return ph.physical_attributes(fractions)


def _matminer_reference(fractions: np.ndarray) -> tuple[list[str], np.ndarray]:
    """matminer on pymatgen Compositions of the same fraction rows.

    IonProperty(fast=False) raises on non-integer amounts, so it gets the pymatgen
    integer formula of the row (all its features but compound possible are
    scale-invariant).
    """
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.composition import (
        ElementProperty,
        IonProperty,
        Stoichiometry,
        ValenceOrbital,
    )
    from pymatgen.core import Composition

    stats = MultipleFeaturizer([ElementProperty.from_preset("magpie"), Stoichiometry(), ValenceOrbital()])
    ion = IonProperty()
    labels = stats.feature_labels() + ion.feature_labels()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in fractions:
            comp = Composition({ELEMENTS[i]: float(f[i]) for i in np.nonzero(f)[0]})
            integer = Composition(comp.get_integer_formula_and_factor()[0])
            rows.append([float(v) for v in stats.featurize(comp) + ion.featurize(integer)])
    return labels, np.array(rows, dtype=np.float64)


def test_parity_with_matminer(fractions, ours):
    labels, ref = _matminer_reference(fractions)
    assert ph.matminer_labels() == labels
    assert ours.shape == ref.shape
    for j, label in enumerate(labels):
        np.testing.assert_array_equal(np.isnan(ours[:, j]), np.isnan(ref[:, j]), err_msg=label)
        np.testing.assert_allclose(ours[:, j], ref[:, j], rtol=1e-6, atol=1e-9, err_msg=label)


def test_compound_possible_scale_dependence_of_pymatgen_is_removed():
    """matminer says PdN: no, Pd2N2: yes; we use the reduced integer formula (no)."""
    from matminer.featurizers.composition import IonProperty
    from pymatgen.core import Composition

    col = ph.feature_labels().index("pa_compound_possible")
    ion = IonProperty()
    assert not ion.featurize(Composition("PdN"))[0]
    assert ion.featurize(Composition("Pd2N2"))[0]
    got = ph.physical_attributes(np.array([_row({"Pd": 1, "N": 1}), _row({"Pd": 2, "N": 2})]))[:, col]
    np.testing.assert_array_equal(got, [0.0, 0.0])


def test_labels():
    labels = ph.feature_labels()
    assert len(labels) == 149
    assert len(set(labels)) == len(labels)
    assert all(re.fullmatch(r"pa_[0-9A-Za-z_]+", label) for label in labels)
    assert labels[:2] == ["pa_MagpieData_minimum_Number", "pa_MagpieData_maximum_Number"]
    assert "pa_0_norm" in labels and "pa_frac_f_valence_electrons" in labels
    assert labels[-3:] == ["pa_compound_possible", "pa_max_ionic_char", "pa_avg_ionic_char"]
    assert ph.physical_attributes(_row({"Cu": 1})[None]).shape == (1, len(labels))


def test_frame_and_citations(fractions):
    frame = ph.physical_attributes_frame(fractions[:3])
    assert list(frame.columns) == ph.feature_labels()
    assert frame.shape == (3, len(ph.feature_labels()))
    assert len(ph.citations()) == 2 and any("Ward" in c for c in ph.citations())


def _get(values: np.ndarray, label: str) -> np.ndarray:
    return values[:, ph.feature_labels().index(label)]


def test_hand_computed():
    rows = np.array([_row({"Fe": 2, "O": 3}), _row({"Fe": 1, "O": 1}), _row({"Na": 1, "Cl": 1}), _row({"Cu": 1})])
    v = ph.physical_attributes(rows)
    np.testing.assert_allclose(_get(v, "pa_0_norm"), [2, 2, 2, 1])
    np.testing.assert_allclose(_get(v, "pa_2_norm")[0], math.sqrt(0.4**2 + 0.6**2))
    np.testing.assert_allclose(_get(v, "pa_10_norm")[0], (0.4**10 + 0.6**10) ** 0.1)
    np.testing.assert_allclose(_get(v, "pa_MagpieData_mean_Number"), [15.2, 17.0, 14.0, 29.0])
    np.testing.assert_allclose(_get(v, "pa_MagpieData_range_Number"), [18, 18, 6, 0])
    np.testing.assert_allclose(_get(v, "pa_MagpieData_avg_dev_Number"), [8.64, 9.0, 3.0, 0.0])
    # mode: most abundant element; a tie goes to the smallest value (FeO, NaCl)
    np.testing.assert_allclose(_get(v, "pa_MagpieData_mode_Number"), [8, 8, 11, 29])
    np.testing.assert_allclose(_get(v, "pa_compound_possible"), [1, 1, 1, 1])
    ionic = 1 - math.exp(-0.25 * (3.16 - 0.93) ** 2)  # pymatgen Pauling X of Cl, Na
    np.testing.assert_allclose(_get(v, "pa_max_ionic_char")[2], ionic)
    np.testing.assert_allclose(_get(v, "pa_avg_ionic_char")[2], 0.25 * ionic)
    np.testing.assert_allclose(_get(v, "pa_max_ionic_char")[3], 0.0)
    fracs = sum(_get(v, f"pa_frac_{o}_valence_electrons") for o in "spdf")
    np.testing.assert_allclose(fracs, 1.0)
    # Fe3O4 needs mixed valence; FeNi has no anion
    other = ph.physical_attributes(np.array([_row({"Fe": 3, "O": 4}), _row({"Fe": 1, "Ni": 1})]))
    np.testing.assert_array_equal(_get(other, "pa_compound_possible"), [1.0, 0.0])


def test_scale_invariance(fractions, ours):
    feo = ph.physical_attributes(np.array([_row({"Fe": 1, "O": 1}) * 1.0, _row({"Fe": 1, "O": 1}) * 4.0]))
    np.testing.assert_array_equal(feo[0], feo[1])
    amounts = np.zeros((2, N_ELEMENTS))
    amounts[0, [ELEMENT_INDEX["Fe"], ELEMENT_INDEX["O"]]] = 1
    amounts[1, [ELEMENT_INDEX["Fe"], ELEMENT_INDEX["O"]]] = 2  # Fe2O2, unnormalised
    both = ph.physical_attributes(amounts)
    np.testing.assert_allclose(both[0], both[1], rtol=1e-12, atol=1e-12)
    scaled = ph.physical_attributes(fractions * 3.0)
    np.testing.assert_allclose(scaled, ours, rtol=1e-12, atol=1e-12)


def test_nfold_sumsets_match_enumeration():
    oxi = ph._tables().oxi
    for e in range(N_ELEMENTS):
        for n in range(1, 7):
            lo, mask = ph._nfold_sumset(e, n)
            sums = {sum(c) for c in combinations_with_replacement(oxi[e], n)}
            assert {lo + j for j in np.nonzero(mask)[0]} == sums, (ELEMENTS[e], n)
        st = ph._structure(e)
        for n in (st.n_min, st.n_min + 1, 97, 1000):
            if n:
                ref = ph._power(st.unit, n)
                assert np.array_equal(ph._nfold_sumset(e, n)[1][:: st.step], ref), (ELEMENTS[e], n)


def _brute_force_neutral(counts: dict[str, int]) -> bool:
    reachable = {0}
    for symbol, n in counts.items():
        states = ph._tables().oxi[ELEMENT_INDEX[symbol]]
        for _ in range(n):
            reachable = {r + s for r in reachable for s in states}
    return 0 in reachable


def test_large_integer_formulas():
    """Fractions far from small integers give big formulas; the check stays exact."""
    from pymatgen.core import Composition

    comps = [{"Fe": 0.3001, "O": 0.3999}, {"Fe": 0.3001, "O": 0.4999}, {"Mn": 0.27, "N": 0.1, "O": 0.63}]
    rows = np.array([_row(c) for c in comps])
    got = _get(ph.physical_attributes(rows), "pa_compound_possible")
    expected = []
    for f in rows:
        comp = Composition({ELEMENTS[i]: float(f[i]) for i in np.nonzero(f)[0]})
        counts = {k: round(v) for k, v in Composition(comp.get_integer_formula_and_factor()[0]).items()}
        counts = {str(k): v for k, v in counts.items()}
        if set(counts) == {"Fe", "O"}:  # Fe in {2, 3}: possible iff 2 Fe <= 2 O <= 3 Fe
            assert counts["Fe"] > 1000
            expected.append(float(2 * counts["Fe"] <= 2 * counts["O"] <= 3 * counts["Fe"]))
        else:
            expected.append(float(_brute_force_neutral(counts)))
    assert expected[:2] == [1.0, 0.0]
    np.testing.assert_array_equal(got, expected)


def test_integer_formula_matches_pymatgen():
    """Vectorized integer reduction == pymatgen get_integer_formula_and_factor, noisy rows too."""
    from pymatgen.core import Composition

    rng = np.random.default_rng(7)
    rows = np.zeros((200, N_ELEMENTS))
    for i in range(len(rows)):
        k = int(rng.integers(1, 7))
        idx = rng.choice(N_ELEMENTS, size=k, replace=False)
        noise = 1 + (1e-3 if i % 2 else 1e-6) * rng.random(k)
        rows[i, idx] = rng.integers(1, 9, size=k) * noise if i % 3 else rng.random(k)
    rows /= rows.sum(axis=1, keepdims=True)
    present = rows > 0
    k = present.sum(axis=1)
    order = np.argsort(~present, axis=1, kind="stable")[:, : k.max()]
    counts = ph._integer_counts(np.take_along_axis(rows, order, axis=1), k)
    special = ph._tables().special
    for i, f in enumerate(rows):
        comp = Composition({ELEMENTS[j]: float(f[j]) for j in np.nonzero(f)[0]})
        ref = Composition(comp.get_integer_formula_and_factor()[0]).get_el_amt_dict()
        key = tuple((int(order[i, j]), int(counts[i, j])) for j in range(k[i]) if counts[i, j])
        key = special.get(key, key)
        assert {ELEMENTS[e]: n for e, n in key} == {el: round(n) for el, n in ref.items()}, comp


def test_missing_data_policy():
    """No Magpie / pymatgen value is missing for the 86 ElemNet elements..."""
    t = ph._tables()
    assert not np.isnan(t.props).any() and not np.isnan(t.x).any()
    assert all(t.oxi)
    # ... and a missing value would propagate like matminer's impute_nan=False.
    props = t.props.copy()
    props[ELEMENT_INDEX["Fe"], ph.MAGPIE_PROPERTIES.index("Number")] = np.nan
    patched = dataclasses.replace(t, props=props)
    rows = np.array([_row({"Fe": 2, "O": 3}), _row({"Fe": 3, "O": 1}), _row({"Cu": 1, "O": 1})])
    v = ph._block(ph._validate(rows), patched)
    names = [f"pa_MagpieData_{s}_Number" for s in ph.MAGPIE_STATS]
    got = np.stack([_get(v, name) for name in names], axis=1)
    assert np.isnan(got[0, :5]).all() and got[0, 5] == 8.0  # mode is O
    assert np.isnan(got[1]).all()  # mode is Fe
    assert not np.isnan(got[2]).any()


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 5)), np.zeros(N_ELEMENTS), np.zeros((1, N_ELEMENTS)), -np.ones((1, N_ELEMENTS))],
)
def test_bad_input(bad):
    with pytest.raises(InputError):
        ph.physical_attributes(bad)


def test_empty_input():
    assert ph.physical_attributes(np.zeros((0, N_ELEMENTS))).shape == (0, len(ph.feature_labels()))


def test_repeated_call_reuses_the_last_result_safely(fractions):
    first = ph.physical_attributes(fractions)
    first[:] = -7.25e9  # the caller's copy: a later call must not see this
    again = ph.physical_attributes(fractions.copy())
    assert not np.any(again == -7.25e9)
    np.testing.assert_array_equal(again, ph._compute(np.asarray(fractions, dtype=np.float64)))
    changed = fractions.copy()
    changed[0] = changed[1]
    np.testing.assert_array_equal(ph.physical_attributes(changed)[0], again[1])
