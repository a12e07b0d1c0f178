"""Formulas -> ElemNet element fractions, rejections with reasons, and the duplicate rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from elemnet_tl.cli import app
from elemnet_tl.compositions import DUPLICATE_RULES, ZERO_AMOUNT, composition_keys, dedup, parse_formulas
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


# ---------------------------------------------------------------- zero amounts

@pytest.mark.parametrize("formula, reason", [
    ("Fe0O3", "zero amount (below 1e-08) of Fe"),  # would be pure O
    ("Fe2O0.0", "zero amount (below 1e-08) of O"),  # would be pure Fe
    ("NaCl0", "zero amount (below 1e-08) of Cl"),  # would be pure Na
    ("Fe-0O3", "zero amount (below 1e-08) of Fe"),
    ("Al1e-9Fe", "zero amount (below 1e-08) of Al"),  # below pymatgen's tolerance: absent, so it counts as zero
    ("Fe0O0Ni", "zero amount (below 1e-08) of Fe, O"),
    ("FeO(OH)0", "zero amount (below 1e-08) of (OH)"),
    ("Ca[OH]0", "zero amount (below 1e-08) of [OH]"),
    ("NaCl·0H2O", "zero amount (below 1e-08) of H2O"),
    ("CuSO4·5H2O0", "zero amount (below 1e-08) of O"),
])
def test_zero_amount_is_rejected(formula, reason):
    assert reason_of(formula) == reason


def test_zero_tolerance_is_pymatgens():
    from pymatgen.core import Composition

    assert ZERO_AMOUNT == Composition.amount_tolerance


@pytest.mark.parametrize("formula, expected", [
    ("Fe0.5Ni0.5", {"Fe": 0.5, "Ni": 0.5}),
    ("Ti0.05Al0.95", {"Ti": 0.05, "Al": 0.95}),
    ("Li0.5CoO2", {"Li": 0.5 / 3.5, "Co": 1 / 3.5, "O": 2 / 3.5}),
    ("(Fe0.2Ni0.8)3Al", {"Fe": 0.15, "Ni": 0.6, "Al": 0.25}),
    ("Ba0.5Sr0.5TiO3", {"Ba": 0.1, "Sr": 0.1, "Ti": 0.2, "O": 0.6}),
    ("Fe.5O.5", {"Fe": 0.5, "O": 0.5}),
    ("Sr0.5H2O", {"Sr": 0.5 / 3.5, "H": 2 / 3.5, "O": 1 / 3.5}),  # a fractional amount, not Sr0 + 0.5 H2O
    ("Fe10O15", {"Fe": 0.4, "O": 0.6}),  # a 0 inside an amount is no zero amount
])
def test_fractional_amounts_still_parse(formula, expected):
    assert fractions_of(formula) == pytest.approx(expected)


def test_tiny_nonzero_amount_is_kept():
    row = parse_formulas(["Al0.000001Fe"]).fractions[0]
    assert row[ELEMENT_INDEX["Al"]] == pytest.approx(1e-6 / (1 + 1e-6))
    assert row[ELEMENT_INDEX["Fe"]] == pytest.approx(1 / (1 + 1e-6))


# ---------------------------------------------------------------- adducts and hydrates

def test_hydrate_with_middle_dot():
    fr = fractions_of("CuSO4·5H2O")  # Cu S O9 H10
    assert fr == pytest.approx({"Cu": 1 / 21, "S": 1 / 21, "O": 9 / 21, "H": 10 / 21})
    assert fractions_of("NaCl·2H2O") == pytest.approx({"Na": 1 / 8, "Cl": 1 / 8, "H": 4 / 8, "O": 2 / 8})


@pytest.mark.parametrize("separator", ["·", "•", "∙", "*", " · "])
def test_adduct_separators_are_equal(separator):
    np.testing.assert_array_equal(parse_formulas([f"CuSO4{separator}5H2O"]).fractions,
                                  parse_formulas(["CuS O9H10"]).fractions)


def test_adduct_parts_counts_and_brackets():
    # A·B·2C: each part added, a leading count multiplies its part, brackets inside parts still work
    assert fractions_of("KAl(SO4)2·12H2O") == pytest.approx(fractions_of("KAlS2O20H24"))
    assert fractions_of("NaCl·KBr·2H2O") == pytest.approx(fractions_of("NaClKBrH4O2"))
    assert fractions_of("CaSO4·0.5H2O") == pytest.approx(fractions_of("Ca2S2O9H2"))
    assert fractions_of("2Na2CO3·3H2O2") == pytest.approx(fractions_of("Na4C2O12H6"))
    assert fractions_of("[Co(NH3)6]Cl3·H2O") == pytest.approx(fractions_of("CoN6H20Cl3O"))


@pytest.mark.parametrize("formula", ["CaSO4.2H2O", "CuSO4.5H2O", "NaCl.2H2O", "Sr1.5H2O"])
def test_ascii_dot_hydrate_with_count_is_ambiguous(formula):
    reason = reason_of(formula)
    assert f"'{formula}' is ambiguous" in reason
    assert f"write a hydrate as {formula.replace('.', '·')}" in reason


def test_ambiguous_hydrate_reason_tells_how_to_write_it():
    assert reason_of("CaSO4.2H2O") == "'CaSO4.2H2O' is ambiguous (hydrate or O4.2?): write a hydrate as CaSO4·2H2O"
    assert "(NO3)2.4?" in reason_of("Ca(NO3)2.4H2O")
    assert reason_of("NaCl·CaSO4.2H2O").startswith("'CaSO4.2H2O' is ambiguous")


@pytest.mark.parametrize("dotted, dot", [("MgSO4.H2O", "MgSO4·H2O"), ("Fe2O3.H2O", "Fe2O3·H2O"),
                                         ("NaCl.H2O", "NaCl·H2O"), ("CaSO4.0.5H2O", "CaSO4·0.5H2O")])
def test_ascii_dot_hydrate_with_one_reading(dotted, dot):
    """No count, or a decimal count pymatgen cannot read as an amount: only the hydrate reading is left."""
    assert fractions_of(dotted) == pytest.approx(fractions_of(dot))


@pytest.mark.parametrize("formula", ["NaCl·", "·H2O", "NaCl··H2O", "NaCl·2", "NaCl*"])
def test_empty_adduct_part(formula):
    assert reason_of(formula).startswith("unparseable formula")


def test_a_count_after_its_formula_is_named():
    """H2O*0.5: the part after the separator is a count with no formula, not an empty part."""
    assert reason_of("H2O*0.5") == ("unparseable formula: a count with no formula after it ('0.5') in an adduct "
                                    "(write A·nB: the count before its formula)")
    assert "an empty part" in reason_of("NaCl··H2O")


def test_adduct_parts_are_checked_like_formulas():
    assert "He" in reason_of("HeF2·H2O")
    assert "Xx" in reason_of("NaCl·Xx")
    assert reason_of("2NaCl").startswith("unparseable formula")  # a leading count only inside an adduct


def test_zero_amounts_and_hydrates_in_the_rejected_report(tmp_path):
    """Through ``elemtl featurize``: a typo'd zero amount must not merge with the real O row."""
    path = tmp_path / "in.csv"
    path.write_text("formula,target\nO,0.0\nFe0O3,-1.0\nFe2O0.0,-2.0\nNaCl0,-3.0\nCaSO4.2H2O,-4.0\n"
                    "CuSO4·5H2O,-5.0\nCuSO4*5H2O,-6.0\nFe0.5Ni0.5,0.1\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["featurize", str(path), "-o", str(out), "--duplicates", "keep"])
    assert result.exit_code == 0, result.output
    assert "8 rows read, 4 rejected" in result.output
    features = pd.read_csv(out)
    assert features["formula"].tolist() == ["O", "CuSO4·5H2O", "CuSO4*5H2O", "Fe0.5Ni0.5"]
    assert features["Cu"].iloc[1] == pytest.approx(1 / 21) and features["H"].iloc[2] == pytest.approx(10 / 21)
    rejected = pd.read_csv(tmp_path / "out.rejected.csv")
    assert rejected["line"].tolist() == [3, 4, 5, 6]
    assert rejected["formula"].tolist() == ["Fe0O3", "Fe2O0.0", "NaCl0", "CaSO4.2H2O"]
    assert rejected["reason"].tolist() == [
        "zero amount (below 1e-08) of Fe", "zero amount (below 1e-08) of O", "zero amount (below 1e-08) of Cl",
        "'CaSO4.2H2O' is ambiguous (hydrate or O4.2?): write a hydrate as CaSO4·2H2O",
    ]


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
