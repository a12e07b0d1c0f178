"""Formulas -> ElemNet element fractions, rejections with reasons, and the duplicate rules."""

from __future__ import annotations

import numpy as np
import pytest

from elemnet_tl.compositions import DUPLICATE_RULES, composition_keys, dedup, parse_formulas
from elemnet_tl.elements import ELEMENT_INDEX, ELEMENTS, N_ELEMENTS


def fractions_of(formula: str) -> dict[str, float]:
    parsed = parse_formulas([formula])
    assert parsed.reasons == [None], parsed.reasons
    row = parsed.fractions[0]
    return {ELEMENTS[i]: float(row[i]) for i in np.flatnonzero(row)}


def reason_of(formula: object) -> str:
    parsed = parse_formulas([formula])
    assert not parsed.ok[0]
    assert not parsed.fractions[0].any(), "a rejected row must be all zero"
    reason = parsed.reasons[0]
    assert isinstance(reason, str) and reason and "\n" not in reason
    return reason


# ---------------------------------------------------------------- ElemNet's 86 elements

def test_elemnet_element_order():
    assert N_ELEMENTS == len(ELEMENTS) == 86
    assert len(set(ELEMENTS)) == 86
    assert ELEMENTS[:8] == ("H", "Li", "Be", "B", "C", "N", "O", "F")
    assert ELEMENTS[-7:] == ("Bi", "Ac", "Th", "Pa", "U", "Np", "Pu")
    # the noble gases He, Ne, Ar are not inputs; Kr and Xe are
    for absent in ("He", "Ne", "Ar", "Po", "At", "Rn", "Fr", "Ra", "Am"):
        assert absent not in ELEMENTS
    assert "Kr" in ELEMENTS and "Xe" in ELEMENTS
    assert ELEMENTS.index("Na") == 8  # F is followed directly by Na (no Ne)
    assert all(ELEMENT_INDEX[e] == i for i, e in enumerate(ELEMENTS))


# ---------------------------------------------------------------- fractions

def test_fe2o3_fractions():
    fr = fractions_of("Fe2O3")
    assert fr == pytest.approx({"Fe": 0.4, "O": 0.6})
    row = parse_formulas(["Fe2O3"]).fractions[0]
    assert row.shape == (86,)
    assert row[ELEMENT_INDEX["O"]] == pytest.approx(0.6)
    assert row[ELEMENT_INDEX["Fe"]] == pytest.approx(0.4)
    assert row.sum() == pytest.approx(1.0)


def test_same_composition_written_differently():
    parsed = parse_formulas(["FeO", "Fe2O2", "Fe0.5O0.5", "OFe", "Fe2O3", "Fe4O6", "Fe0.4O0.6"])
    assert all(r is None for r in parsed.reasons)
    keys = composition_keys(parsed.fractions)
    assert keys[0] == keys[1] == keys[2] == keys[3]
    assert keys[4] == keys[5] == keys[6]
    assert keys[0] != keys[4]
    np.testing.assert_allclose(parsed.fractions[0], parsed.fractions[2])


def test_parentheses():
    assert fractions_of("Ca(OH)2") == pytest.approx({"Ca": 0.2, "O": 0.4, "H": 0.4})
    assert fractions_of("(NH4)2SO4") == pytest.approx({"N": 2 / 15, "H": 8 / 15, "S": 1 / 15, "O": 4 / 15})
    assert fractions_of("Ca3(PO4)2") == pytest.approx({"Ca": 3 / 13, "P": 2 / 13, "O": 8 / 13})


def test_fractional_formula():
    assert fractions_of("Fe0.7Cr0.18Ni0.12") == pytest.approx({"Fe": 0.7, "Cr": 0.18, "Ni": 0.12})
    # amounts that do not sum to one are normalised
    assert fractions_of("Fe7Cr1.8Ni1.2") == pytest.approx({"Fe": 0.7, "Cr": 0.18, "Ni": 0.12})


def test_xenon_is_an_input():
    assert fractions_of("XeF2") == pytest.approx({"Xe": 1 / 3, "F": 2 / 3})


# ---------------------------------------------------------------- rejections

@pytest.mark.parametrize("formula, element", [("HeF2", "He"), ("NeO", "Ne"), ("ArF", "Ar"), ("AmO2", "Am"),
                                              ("PoO2", "Po"), ("RnF2", "Rn")])
def test_elements_outside_the_86_are_named(formula, element):
    reason = reason_of(formula)
    assert element in reason
    assert "86" in reason


def test_unknown_symbol_is_named():
    reason = reason_of("Xx2O3")
    assert "Xx" in reason
    assert "unknown" in reason


@pytest.mark.parametrize("empty", ["", "   ", None, float("nan")])
def test_empty_formula(empty):
    assert reason_of(empty) == "empty formula"


@pytest.mark.parametrize("junk", ["Fe2O3)(", "((Fe2O3", "fe2o3", "12", "Fe-2O3"])
def test_unparseable_formula(junk):
    assert reason_of(junk).startswith("unparseable formula")


def test_nan_and_the_string_nan_are_not_confused():
    """One parse per distinct value: a missing formula must not share the cache entry of the text 'nan'."""
    parsed = parse_formulas(["nan", float("nan"), None, "None"])
    assert parsed.reasons[1] == "empty formula"
    assert parsed.reasons[2] == "empty formula"


def test_mixed_list_keeps_order():
    parsed = parse_formulas(["NaCl", "HeF2", "", "MgO", "Fe2O3)("])
    assert parsed.ok.tolist() == [True, False, False, True, False]
    assert parsed.fractions.shape == (5, 86)
    assert parsed.fractions[0][ELEMENT_INDEX["Na"]] == parsed.fractions[0][ELEMENT_INDEX["Cl"]] == 0.5
    np.testing.assert_allclose(parsed.fractions[3], parse_formulas(["MgO"]).fractions[0])


# ---------------------------------------------------------------- dedup

# rows: A, B, A, A, C, B (A = FeO written three ways)
FORMULAS = ["FeO", "NaCl", "Fe2O2", "Fe0.5O0.5", "MgO", "ClNa"]
TARGET = np.array([-1.0, 0.5, -1.5, -1.5, 2.0, 0.7])


@pytest.fixture(scope="module")
def fractions() -> np.ndarray:
    return parse_formulas(FORMULAS).fractions


def test_rules_listed():
    assert set(DUPLICATE_RULES) == {"auto", "most-stable", "mean", "keep"}


def test_most_stable_lowest_target_ties_keep_first(fractions):
    result = dedup(fractions, TARGET, "most-stable")
    # A: rows 2 and 3 tie at -1.5 -> row 2 (first); B: row 1 (0.5 < 0.7); C: row 4
    assert result.keep.tolist() == [1, 2, 4]
    assert result.target.tolist() == [0.5, -1.5, 2.0]
    assert result.merged.tolist() == [0, 3, 5]
    assert result.n_groups_merged == 2
    assert result.rule == "most-stable"
    assert len(result.keep) + len(result.merged) == len(TARGET)


def test_most_stable_by_stability_column(fractions):
    stability = np.array([0.0, 0.3, 0.2, 0.1, 0.0, 0.0])  # e.g. energy above hull
    result = dedup(fractions, TARGET, "most-stable", stability)
    # A: row 0 (0.0); B: row 5 (0.0 < 0.3); targets are the kept rows' own values
    assert result.keep.tolist() == [0, 4, 5]
    assert result.target.tolist() == [-1.0, 2.0, 0.7]
    assert result.merged.tolist() == [1, 2, 3]


def test_most_stable_unknown_stability_loses(fractions):
    stability = np.array([np.nan, 0.3, 0.2, np.nan, 0.0, np.nan])
    result = dedup(fractions, TARGET, "most-stable", stability)
    assert result.keep.tolist() == [1, 2, 4]


def test_mean_keeps_first_row_with_group_mean(fractions):
    result = dedup(fractions, TARGET, "mean")
    assert result.keep.tolist() == [0, 1, 4]
    np.testing.assert_allclose(result.target, [(-1.0 - 1.5 - 1.5) / 3, 0.6, 2.0])
    assert result.merged.tolist() == [2, 3, 5]
    assert result.n_groups_merged == 2
    assert result.rule == "mean"


def test_keep_keeps_everything(fractions):
    result = dedup(fractions, TARGET, "keep")
    assert result.keep.tolist() == list(range(6))
    assert result.target.tolist() == TARGET.tolist()
    assert len(result.merged) == 0
    assert result.n_groups_merged == 0


def test_no_duplicates_nothing_merged():
    fr = parse_formulas(["NaCl", "MgO", "Fe2O3"]).fractions
    for rule in ("most-stable", "mean", "keep"):
        result = dedup(fr, np.array([1.0, 2.0, 3.0]), rule)
        assert result.keep.tolist() == [0, 1, 2]
        assert len(result.merged) == 0


def test_unknown_rule():
    fr = parse_formulas(["NaCl", "NaCl"]).fractions
    with pytest.raises(ValueError, match="unknown duplicate rule"):
        dedup(fr, np.array([1.0, 2.0]), "lowest")


def test_empty_input():
    result = dedup(np.zeros((0, 86)), np.zeros(0), "mean")
    assert len(result.keep) == 0 and len(result.merged) == 0
    assert result.n_groups_merged == 0
