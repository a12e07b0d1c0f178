"""Featurize the messy example table through the API and the CLI: what is kept, merged and rejected."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import BAND_GAPS, MESSY, binary_table
from typer.testing import CliRunner

from elemnet_tl.cli import app
from elemnet_tl.compositions import parse_formulas
from elemnet_tl.datasets import load_table
from elemnet_tl.elements import ELEMENTS
from elemnet_tl.errors import InputError
from elemnet_tl.featurize import featurize, load_and_prepare, prepare, rejected_path

runner = CliRunner()

# What a chemist expects from data/messy_formation_energy.csv (line numbers as in the file, header = 1)
KEPT = ["NaCl", "MgO", "Al2O3", "Fe4O6", "TiO2", "SiO2", "Ca(OH)2", "(NH4)2SO4", "Fe0.7Cr0.18Ni0.12", "XeF2",
        "LiF", "KCl", "GaN", "CaF2"]
KEPT_LINES = [2, 3, 4, 6, 8, 10, 12, 13, 14, 15, 26, 27, 28, 29]
KEPT_TARGETS = [-2.13, -3.12, -3.47, -1.78, -3.26, -3.15, -2.04, -0.82, -0.03, -0.57, -3.19, -2.26, -0.57, -4.24]
MERGED_LINES = [5, 7, 9, 11]  # Fe2O3 and Fe0.4O0.6 into Fe4O6, anatase into rutile, Si2O4 into SiO2 (a tie)
REJECTED = [  # line, formula, words the reason must contain
    (16, "Xx2O3", ["unknown", "Xx"]),
    (17, "HeF2", ["He", "86"]),
    (18, "AmO2", ["Am", "86"]),
    (19, "PoO2", ["Po", "86"]),
    (20, None, ["empty formula"]),
    (21, "Fe2O3)(", ["unparseable"]),
    (22, "ZnO", ["missing target"]),
    (23, "CuO", ["infinite target"]),
    (24, "Cu2O", ["missing target"]),
    (25, "NiO", ["not a number", "-1.24 eV"]),
]


def check_rejected(rejected: pd.DataFrame) -> None:
    assert list(rejected.columns) == ["line", "formula", "reason"]
    assert rejected["line"].tolist() == [r[0] for r in REJECTED]
    for (line, formula, words), (_, row) in zip(REJECTED, rejected.iterrows()):
        if formula is None:
            assert pd.isna(row["formula"]) or row["formula"] == "", line
        else:
            assert row["formula"] == formula, line
        for word in words:
            assert word in row["reason"], (line, row["reason"])


def check_features(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["line", "formula", "target", "notes", *ELEMENTS]  # line: to join back
    assert frame.columns[-1] == "Pu" and frame["line"].tolist() == KEPT_LINES
    assert frame["formula"].tolist() == KEPT
    np.testing.assert_allclose(frame["target"], KEPT_TARGETS)
    fractions = frame[list(ELEMENTS)].to_numpy()
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-6)
    fe4o6 = frame.set_index("formula").loc["Fe4O6"]
    assert fe4o6["Fe"] == pytest.approx(0.4) and fe4o6["O"] == pytest.approx(0.6)
    steel = frame.set_index("formula").loc["Fe0.7Cr0.18Ni0.12"]
    assert (steel["Fe"], steel["Cr"], steel["Ni"]) == pytest.approx((0.7, 0.18, 0.12), abs=1e-6)


# ---------------------------------------------------------------- the messy table

def test_messy_table_api(tmp_path):
    out = tmp_path / "features.csv"
    frame, result = featurize(MESSY, out)
    assert (result.n_read, result.n_rejected, result.n_merged, result.n_kept) == (28, 10, 4, 14)
    assert result.n_read == result.n_rejected + result.n_merged + result.n_kept
    assert result.rule == "most-stable"  # the target is a formation energy
    assert result.table.target_col == "formation_energy_per_atom"
    assert result.frame["line"].tolist() == KEPT_LINES
    merged = sorted(set(range(2, 30)) - set(KEPT_LINES) - {r[0] for r in REJECTED})
    assert merged == MERGED_LINES
    check_features(frame)
    check_rejected(result.rejected)
    # files
    assert rejected_path(out) == tmp_path / "features.rejected.csv"
    check_features(pd.read_csv(out))
    check_rejected(pd.read_csv(tmp_path / "features.rejected.csv"))
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["features.csv", "features.merged.csv", "features.rejected.csv"]


def test_messy_table_cli(tmp_path):
    out = tmp_path / "features.csv.gz"
    result = runner.invoke(app, ["featurize", str(MESSY), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "28 rows read, 10 rejected, 4 merged, 14 kept" in result.output
    assert "most-stable" in result.output
    assert str(tmp_path / "features.rejected.csv") in result.output
    check_features(pd.read_csv(out))
    check_rejected(pd.read_csv(tmp_path / "features.rejected.csv"))


def test_mean_rule_on_messy_table():
    f = load_and_prepare(MESSY, duplicates="mean")
    assert (f.n_read, f.n_rejected, f.n_merged, f.n_kept) == (28, 10, 4, 14)
    by_formula = f.frame.set_index("formula")["target"]
    assert by_formula["Fe2O3"] == pytest.approx((-1.71 - 1.78 - 1.62) / 3)  # first row of the group, mean target
    assert by_formula["TiO2"] == pytest.approx((-3.26 - 3.24) / 2)
    assert "Fe4O6" not in by_formula.index


def test_keep_rule_on_messy_table():
    f = load_and_prepare(MESSY, duplicates="keep")
    assert (f.n_rejected, f.n_merged, f.n_kept) == (10, 0, 18)


def test_pa_adds_physical_attributes(tmp_path):
    out = tmp_path / "features.parquet"
    result = runner.invoke(app, ["featurize", str(MESSY), "-o", str(out), "--pa"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns[:90]) == ["line", "formula", "target", "notes", *ELEMENTS]
    pa_cols = list(frame.columns[90:])
    assert pa_cols and all(c.startswith("pa_") for c in pa_cols)
    assert frame["formula"].tolist() == KEPT
    assert np.isfinite(frame[pa_cols].to_numpy(dtype=float)).mean() > 0.9


# ---------------------------------------------------------------- duplicate rules

def test_auto_rule_band_gap_is_mean(tmp_path):
    frame, result = featurize(BAND_GAPS, tmp_path / "gaps.csv")
    assert result.rule == "mean"
    assert (result.n_read, result.n_rejected, result.n_merged, result.n_kept) == (65, 0, 2, 63)
    by_formula = frame.set_index("formula")["target"]
    assert by_formula["ZnS"] == pytest.approx((3.54 + 3.91) / 2)
    assert by_formula["TiO2"] == pytest.approx((3.03 + 3.2) / 2)
    assert not (tmp_path / "gaps.rejected.csv").exists()  # nothing rejected, no report


def test_auto_rule_formation_energy_by_column_name(tmp_path):
    path = tmp_path / "table.csv"  # a neutral file name: the column name decides
    pd.DataFrame({"formula": ["TiO2", "NaCl", "TiO2"], "e_form": [-3.2, -2.1, -3.3]}).to_csv(path, index=False)
    f = load_and_prepare(path)
    assert f.rule == "most-stable"
    assert f.frame["formula"].tolist() == ["NaCl", "TiO2"]
    assert f.target.tolist() == [-2.1, -3.3]
    pd.DataFrame({"formula": ["TiO2", "NaCl", "TiO2"], "band_gap": [3.0, 8.5, 3.2]}).to_csv(path, index=False)
    f = load_and_prepare(path)
    assert f.rule == "mean"
    assert f.target.tolist() == [pytest.approx(3.1), 8.5]


def test_stability_col(tmp_path):
    path = tmp_path / "gaps.csv"
    pd.DataFrame({
        "formula": ["TiO2", "TiO2", "Ti2O4", "NaCl"],
        "band_gap": [3.03, 3.2, 3.4, 8.5],
        "polymorph_score": [0.1, 0.0, 0.2, 0.0],
    }).to_csv(path, index=False)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["featurize", str(path), "-o", str(out), "--stability-col", "polymorph_score"])
    assert result.exit_code == 0, result.output
    assert "lowest polymorph_score" in result.output
    frame = pd.read_csv(out)
    assert frame["formula"].tolist() == ["TiO2", "NaCl"]
    assert frame["target"].tolist() == [3.2, 8.5]  # the band gap of the most stable polymorph, not a mean


def test_stability_column_found_by_name(tmp_path):
    path = tmp_path / "gaps.csv"
    pd.DataFrame({"formula": ["TiO2", "TiO2"], "band_gap": [3.03, 3.2],
                  "e_above_hull": [0.05, 0.0]}).to_csv(path, index=False)
    f = load_and_prepare(path, target_col="band_gap")
    assert f.rule == "most-stable" and "e_above_hull" in f.rule_reason
    assert f.target.tolist() == [3.2]


def test_unknown_stability_col_is_an_error(tmp_path):
    result = runner.invoke(app, ["featurize", str(BAND_GAPS), "-o", str(tmp_path / "o.csv"),
                                 "--stability-col", "e_hull"])
    assert result.exit_code == 2
    assert "e_hull" in result.output


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_output_formats_round_trip(tmp_path, suffix):
    out = tmp_path / f"features{suffix}"
    frame, _ = featurize(MESSY, out)
    back = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    pd.testing.assert_frame_equal(back, frame, check_exact=False, rtol=1e-12)
    assert (tmp_path / "features.rejected.csv").is_file()


def _messy_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "formula": ["NaCl", "HeF2", "Fe2O3", "Fe4O6", None, "MgO"],
        "target": [-2.13, 0.4, -1.71, -1.78, -1.0, float("nan")],
    })


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet", ".json", ".jsonl"])
def test_input_formats(tmp_path, suffix):
    frame = _messy_frame()
    path = tmp_path / f"input{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    f = load_and_prepare(path, duplicates="most-stable")
    assert f.frame["formula"].tolist() == ["NaCl", "Fe4O6"]
    assert f.target.tolist() == [-2.13, -1.78]
    assert (f.n_read, f.n_rejected, f.n_merged) == (6, 3, 1)
    # CSV: line in the file (header = line 1); JSON lines: line in the file; parquet/JSON: row number
    first = 2 if suffix in (".csv", ".csv.gz", ".tsv") else 1
    assert f.rejected["line"].tolist() == [first + 1, first + 4, first + 5]
    assert f.frame["line"].tolist() == [first, first + 3]
    reasons = f.rejected["reason"].tolist()
    assert "He" in reasons[0] and reasons[1] == "empty formula" and reasons[2] == "missing target"


def test_cli_reads_parquet_and_writes_csv(tmp_path):
    path = tmp_path / "in.parquet"
    _messy_frame().to_parquet(path, index=False)
    out = tmp_path / "sub" / "out.csv"  # a missing folder is created
    result = runner.invoke(app, ["featurize", str(path), "-o", str(out), "--duplicates", "most-stable"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["formula"].tolist() == ["NaCl", "Fe4O6"]
    assert pd.read_csv(tmp_path / "sub" / "out.rejected.csv")["line"].tolist() == [2, 5, 6]


def test_target_column_with_text_cells_is_still_found(tmp_path):
    """One '-1.24 eV' cell makes pandas read the column as text: it is still the target."""
    path = tmp_path / "t.csv"
    path.write_text("formula,e_form,notes\nNaCl,-2.13,ok\nMgO,-3.1 eV,unit in cell\nLiF,-3.19,ok\n")
    table = load_table(path)
    assert table.target_col == "e_form"
    f = prepare(table)
    assert f.frame["formula"].tolist() == ["NaCl", "LiF"]
    assert f.rejected["reason"].tolist() == ["target is not a number: '-3.1 eV'"]


def test_stale_rejected_report_is_removed(tmp_path):
    out = tmp_path / "features.csv"
    featurize(MESSY, out)
    assert (tmp_path / "features.rejected.csv").exists()
    featurize(BAND_GAPS, out)  # nothing rejected this time
    assert not (tmp_path / "features.rejected.csv").exists()


def test_outputs_are_readable_by_others(tmp_path):
    out = tmp_path / "features.csv"
    featurize(BAND_GAPS, out)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not a temp file's 0600


# ---------------------------------------------------------------- input-reading pitfalls

def _csv(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", ["featurize", "predict"])
def test_target_col_that_is_the_formula_column(tmp_path, command):
    path = _csv(tmp_path, "formula,target\nNaCl,1\nMgO,2\n")
    result = runner.invoke(app, [command, str(path), "--target-col", "formula", "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert "target column 'formula' is the formula column" in result.output
    assert "internal error" not in result.output


def test_chosen_formula_col_beside_a_column_named_formula(tmp_path):
    """A reduced and a full formula column: the chosen one is used, the other (and a 'line' column) do not clash."""
    path = _csv(tmp_path, "formula,full_formula,line,target\nNaCl,Na4Cl4,7,1\nMgO,Mg2O2,8,2\n")
    f = load_and_prepare(path, formula_col="full_formula")
    assert f.frame["formula"].tolist() == ["Na4Cl4", "Mg2O2"]
    assert f.frame["line"].tolist() == [2, 3] and f.target.tolist() == [1.0, 2.0]
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["featurize", str(path), "--formula-col", "full_formula", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["formula"].tolist() == ["Na4Cl4", "Mg2O2"]


@pytest.mark.parametrize("text", [
    "formula,target\nNaCl,1.5,\nMgO,2.5,\n",  # a trailing comma on every row (spreadsheet export)
    "formula,target\nNaCl,1.5,\nMgO,2.5\n",  # only on the first row: pandas would take it as the index
    "formula,target\nNaCl,1.5\nMgO,2.5, ,\n",  # only on a later row
])
def test_trailing_empty_fields_are_ignored(tmp_path, text):
    f = load_and_prepare(_csv(tmp_path, text))
    assert f.frame["formula"].tolist() == ["NaCl", "MgO"]
    assert f.target.tolist() == [1.5, 2.5]
    assert list(f.frame.columns) == ["line", "formula", "target"]


def test_row_names_without_a_header_name_are_read(tmp_path):
    """R's write.table: every row starts with a row name the header does not name."""
    f = load_and_prepare(_csv(tmp_path, "formula,target\n1,NaCl,1.5\n2,MgO,2.5\n"))
    assert f.frame["formula"].tolist() == ["NaCl", "MgO"] and f.target.tolist() == [1.5, 2.5]


def test_unicode_spaces_in_a_formula_read_as_spaces():
    parsed = parse_formulas(["Fe2\xa0O3", "Fe2\u2009O3", "Fe2O3"])
    assert parsed.reasons == [None, None, None]
    assert (parsed.fractions[0] == parsed.fractions[2]).all() and (parsed.fractions[1] == parsed.fractions[2]).all()


@pytest.mark.parametrize("text, line", [
    ("formula,target\nNaCl,1.5,extra\nMgO,2.5\n", 2),
    ("formula,target\nNaCl,1.5\nMgO,2.5\nKCl,3.5,,4\n", 4),
])
def test_a_value_beyond_the_header_is_an_error(tmp_path, text, line):
    with pytest.raises(InputError, match=rf"line {line} has a value beyond the header's 2 columns"):
        load_table(_csv(tmp_path, text))


def test_a_comment_line_before_the_header_is_named(tmp_path):
    with pytest.raises(InputError, match="line 1 \\('# made by a script'\\) looks like a comment"):
        load_table(_csv(tmp_path, "# made by a script\nformula,target\nNaCl,1.5\nMgO,2.5\n"))


@pytest.mark.parametrize("suffix", [".csv.xz", ".zip", ".csv.bz2", ".csv.gz", ".tsv.xz"])
@pytest.mark.parametrize("sep", [",", ";"])
def test_compressed_inputs_are_sniffed_decompressed(tmp_path, suffix, sep):
    """Read right only when the separator is sniffed from the decompressed text (';' with decimal commas)."""
    sep = "\t" if ".tsv" in suffix else sep
    path = tmp_path / f"in{suffix}"
    targets = ["1,5", "2,5"] if sep == ";" else [1.5, 2.5]
    pd.DataFrame({"formula": ["NaCl", "MgO"], "target": targets}).to_csv(path, sep=sep, index=False)
    f = load_and_prepare(path)
    assert f.frame["formula"].tolist() == ["NaCl", "MgO"]
    assert f.target.tolist() == [1.5, 2.5]


def test_zip_with_two_files_is_an_error(tmp_path):
    import zipfile

    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "formula,target\nNaCl,1\n")
        archive.writestr("b.csv", "formula,target\nMgO,1\n")
    with pytest.raises(InputError, match="holds 2 files"):
        load_table(path)
    mac = tmp_path / "mac.zip"  # macOS "Compress": the table plus a __MACOSX/ entry
    with zipfile.ZipFile(mac, "w") as archive:
        archive.writestr("t.csv", "formula,target\nNaCl,1\nMgO,2\n")
        archive.writestr("__MACOSX/._t.csv", "resource fork")
    assert load_table(mac).frame["formula"].tolist() == ["NaCl", "MgO"]


def test_text_stability_col_given_is_an_error(tmp_path):
    path = _csv(tmp_path, "formula,target,prototype\nTiO2,3.0,rutile\nTiO2,3.2,anatase\n")
    result = runner.invoke(app, ["featurize", str(path), "--stability-col", "prototype", "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert "stability column 'prototype' is not numeric (line 2: 'rutile')" in result.output


def test_found_stability_column_with_text_and_blank_cells(tmp_path):
    """The numeric cells are used; the summary names the rows without a number (ranked last)."""
    path = _csv(tmp_path, "formula,target,e_hull\nNaCl,1,0.1\nClNa,2,abc\nMgO,2,\nMgO,3,0.0\n")
    f = load_and_prepare(path)
    assert f.rule == "most-stable"
    assert f.frame["line"].tolist() == [2, 5] and f.target.tolist() == [1.0, 3.0]
    assert "2 rows without a number in e_hull ranked last (first: line 3: 'abc')" in f.rule_reason
    path = _csv(tmp_path, "formula,target,e_hull\nNaCl,1,low\nClNa,2,high\n")  # mostly text: not used
    f = load_and_prepare(path)
    assert f.rule == "mean" and "e_hull not used: not numeric (line 2: 'low')" in f.rule_reason
    path = _csv(tmp_path, "formula,target,e_hull\nNaCl,1,n/a\nClNa,2,0.1\nMgO,2,0.2\n")  # NA markers: missing
    assert "(first: line 2: missing)" in load_and_prepare(path).rule_reason


def test_deuterium_is_rejected_not_merged_with_hydrogen(tmp_path):
    f = load_and_prepare(_csv(tmp_path, "formula,target\nD2O,0.3\nH2O,1.0\nT2O,0.2\n"))
    assert f.frame["formula"].tolist() == ["H2O"] and f.target.tolist() == [1.0] and f.n_merged == 0
    assert f.rejected["line"].tolist() == [2, 4]
    assert "D (deuterium): isotopes are not distinguished" in f.rejected["reason"][0]
    assert "T (tritium)" in f.rejected["reason"][1]


@pytest.mark.parametrize("formula, words", [
    ("Fe₂O₃", "unparseable formula 'Fe₂O₃': unicode subscripts are not read, write Fe2O3"),
    ("Fe2+", "unparseable formula 'Fe2+': '+' (a charge?) is not read"),
    ("Fe1e3O", "unparseable formula 'Fe1e3O': scientific notation in the amount 1e3"),
    ("Fe1e+3O", "unparseable formula 'Fe1e+3O': scientific notation in the amount 1e+3"),
    ("Fe1E-3O", "unparseable formula 'Fe1E-3O': scientific notation in the amount 1E-3"),
    ("Fe2O3)(", "unparseable formula 'Fe2O3)(': cannot read ')('"),
])
def test_rejection_reasons_are_in_our_words(formula, words):
    reason = parse_formulas([formula]).reasons[0]
    assert reason is not None and reason.startswith(words), reason
    assert "invalid formula" not in reason


def test_duplicate_column_names_are_an_error(tmp_path):
    path = _csv(tmp_path, "formula,target,target\nNaCl,1,2\nMgO,2,3\n")
    result = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert "column 'target' appears 2 times in the header" in result.output


# ---------------------------------------------------------------- shared data (skips when absent)

def test_shared_steels_all_parse(shared_data):
    path = shared_data / "targets" / "matbench_steels_yield.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    f = load_and_prepare(path)
    assert f.n_read == 312 and f.n_rejected == 0
    assert f.n_read == f.n_rejected + f.n_merged + f.n_kept


def test_featurize_warns_about_the_target_as_training_commands_do(tmp_path):
    """A value absurdly far from the rest (a typo or another unit) and a two-valued target are named."""
    wild = tmp_path / "wild.csv"
    wild.write_text("formula,target\nNaCl,8.5\nMgO,7.8\nLiF,13.6\nKBr,7.4\nCaO,5e6\n")
    result = runner.invoke(app, ["featurize", str(wild), "-o", str(tmp_path / "w.csv")])
    assert result.exit_code == 0, result.output
    assert "line 6, 5e+06): a typo or another unit?" in " ".join(result.output.split())
    labels = tmp_path / "labels.csv"
    labels.write_text("formula,target\nNaCl,1\nMgO,0\nLiF,1\nKBr,0\n")
    result = runner.invoke(app, ["featurize", str(labels), "-o", str(tmp_path / "l.csv")])
    assert result.exit_code == 0 and "takes only two values" in result.output
    # 0/1 labels with a conflicting duplicate, averaged to 0.5: still said (it was hidden by the merge)
    labels.write_text("formula,target\nNaCl,1\nMgO,0\nLiF,1\nKBr,0\nNaCl,0\n")
    result = runner.invoke(app, ["featurize", str(labels), "-o", str(tmp_path / "l2.csv"), "--duplicates", "mean"])
    out = " ".join(result.output.split())
    assert result.exit_code == 0 and "takes only two values (0, 1)" in out and "1 value in between" in out


def _train_and_test(tmp_path, test_header: str, test_rows: list[str]) -> tuple:
    train = tmp_path / "train.csv"
    train.write_text("composition,gap\nNaCl,8.5\nMgO,7.8\nSi,1.1\n")
    test = tmp_path / "test.csv"
    test.write_text("\n".join([test_header, *test_rows]) + "\n")
    return train, test


def test_a_test_file_is_read_with_the_training_data_column_names(tmp_path):
    """The training data's target 'gap' (guessed) is the test file's target too, beside another numeric
    column that alone would make the test file's target ambiguous."""
    train_path, test_path = _train_and_test(tmp_path, "composition,density,gap", ["KCl,1.98,8.4", "GaAs,5.3,1.4"])
    train = load_and_prepare(train_path)
    with pytest.raises(InputError, match="ambiguous target column"):
        load_and_prepare(test_path)  # on its own
    test = load_and_prepare(test_path, duplicates="keep", like=train)
    assert test.table.target_col == "gap" and test.target.tolist() == [8.4, 1.4]
    assert test.table.target_note() is None  # not guessed: it is the training data's name


def test_a_test_file_naming_the_target_otherwise_is_read_and_said(tmp_path):
    train_path, test_path = _train_and_test(tmp_path, "formula,Eg", ["KCl,8.4", "GaAs,1.4"])
    train = load_and_prepare(train_path, target_col="gap")
    test = load_and_prepare(test_path, target_col="gap", duplicates="keep", like=train)
    assert test.table.target_col == "Eg" and test.target.tolist() == [8.4, 1.4]
    assert test.record()["target_column"] == "Eg"
    note = test.table.target_note()
    assert note is not None and "'Eg'" in note and "no column 'gap'" in note and str(test_path) in note


def test_a_test_file_without_the_target_name_and_two_candidates_says_how_to_fix_it(tmp_path):
    train_path, test_path = _train_and_test(tmp_path, "formula,energy,Eg", ["KCl,1.0,8.4", "GaAs,2.0,1.4"])
    train = load_and_prepare(train_path)
    with pytest.raises(InputError) as error:
        load_and_prepare(test_path, duplicates="keep", like=train)
    message = str(error.value)
    assert "\n" not in message and str(test_path) in message
    assert "no column 'gap'" in message and "energy, Eg" in message and "rename its target column to 'gap'" in message


def test_a_test_file_beside_a_named_dataset_uses_the_dataset_name_of_its_target(tmp_path):
    """A named dataset's target column is 'target' inside the tool; a test file names it as the dataset does."""
    train = load_and_prepare("expt-formation-enthalpy")
    named = tmp_path / "named.csv"
    named.write_text("formula,density,formation_enthalpy\nNaCl,2.2,-2.1\nMgO,3.6,-3.1\n")
    test = load_and_prepare(named, duplicates="keep", like=train)
    assert test.table.target_col == "formation_enthalpy" and test.table.target_note() is None
    other = tmp_path / "other.csv"
    other.write_text("formula,dH\nNaCl,-2.1\n")
    note = load_and_prepare(other, duplicates="keep", like=train).table.target_note()
    assert note is not None and "no column 'formation_enthalpy'" in note


def test_rows_merged_as_duplicates_are_listed(tmp_path):
    """'6 merged' said which rows went into which kept value nowhere: they are listed beside the output."""
    path = tmp_path / "dups.csv"
    path.write_text("formula,target\nFe2O3,1\nFe4O6,3\nFe0.4O0.6,5\nNaCl,2\nFe2O3,100\nMgO,1\n")
    out = tmp_path / "d.csv"
    result = runner.invoke(app, ["featurize", str(path), "-o", str(out), "--duplicates", "mean"])
    assert result.exit_code == 0, result.output
    assert "4 rows of" in result.output and "1 group of duplicates (mean) listed in" in " ".join(result.output.split())
    merged = pd.read_csv(tmp_path / "d.merged.csv")
    assert merged["line"].tolist() == [2, 3, 4, 6] and set(merged["kept_line"]) == {2}
    assert merged["target"].tolist() == [1, 3, 5, 100] and np.allclose(merged["kept_target"], 27.25)
    runner.invoke(app, ["featurize", str(path), "-o", str(out), "--duplicates", "keep"])
    assert not (tmp_path / "d.merged.csv").exists()  # a stale list is removed
    # a list fixed by hand and read again is not overwritten by the new one
    (tmp_path / "x.merged.csv").write_text("formula,target\nNaCl,1\nNaCl,2\n")
    result = runner.invoke(app, ["featurize", str(tmp_path / "x.merged.csv"), "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "merged-rows list" in result.output


def test_a_run_lists_its_merged_rows(tmp_path):
    from elemnet_tl.pretrain import pretrain
    from elemnet_tl.training import FitConfig

    frame = binary_table(40, seed=9)
    pd.concat([frame, frame.head(3).assign(target=frame.head(3)["target"] + 1)]).to_csv(tmp_path / "t.csv", index=False)
    pretrain(tmp_path / "t.csv", tmp_path / "run", arch="8x1", duplicates="mean",
             config=FitConfig(epochs=1, batch_size=16),
             show_progress=False, notices=False)
    merged = pd.read_csv(tmp_path / "run" / "train.merged.csv")
    assert len(merged) >= 6 and (merged["kept_line"] <= merged["line"]).all()
    means = merged.groupby("kept_line")["target"].mean()
    np.testing.assert_allclose(merged["kept_target"], means[merged["kept_line"]].to_numpy())  # the mean rule
    # an input that is itself such a list, in the run folder, is neither removed as stale nor overwritten
    listed = tmp_path / "run2" / "train.merged.csv"
    listed.parent.mkdir()
    frame.to_csv(listed, index=False)  # no duplicates: nothing to list
    for overwrite in (False, True):
        pretrain(listed, listed.parent, arch="8x1", duplicates="mean", config=FitConfig(epochs=1, batch_size=16),
                 show_progress=False, notices=False, overwrite=overwrite)
        assert listed.is_file() and len(pd.read_csv(listed)) == len(frame)


def test_formulas_without_a_target_are_featurized_row_by_row(tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text("formula,notes\nFe2O3,hematite\nNaCl,\nXx2,typo\nNaCl,again\n")
    out = tmp_path / "f.csv"
    result = runner.invoke(app, ["featurize", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 rows read, 1 rejected, 0 merged, 3 kept" in result.output and "no target column" in result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["line", "formula", "notes", *ELEMENTS]
    assert list(frame["formula"]) == ["Fe2O3", "NaCl", "NaCl"] and frame["notes"].fillna("").tolist() == [
        "hematite", "", "again"]
    assert frame.loc[0, "O"] == 0.6 and frame.loc[0, "Fe"] == 0.4  # shortest decimals, not float32 noise
    assert pd.read_csv(tmp_path / "f.rejected.csv")["line"].tolist() == [4]
    for option in (["--duplicates", "mean"], ["--stability-col", "notes"]):
        refused = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "g.csv"), *option])
        assert refused.exit_code == 2 and "needs a target column" in refused.output, refused.output
    two = tmp_path / "two.csv"
    two.write_text("formula,a,b\nNaCl,1,2\n")
    ambiguous = runner.invoke(app, ["featurize", str(two), "-o", str(tmp_path / "h.csv")])
    assert ambiguous.exit_code == 2 and "ambiguous target column" in ambiguous.output


def _featurized(tmp_path, name: str, text: str | bytes) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """featurize a file written from ``text``: the output (read as text), its rejected rows and the console."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["featurize", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rejected = tmp_path / "out.rejected.csv"
    return (pd.read_csv(out, dtype=str, keep_default_na=False),
            pd.read_csv(rejected, keep_default_na=False) if rejected.is_file() else None, result.output)


def test_id_columns_are_never_taken_as_a_target(tmp_path):
    """A table of formulas and sample numbers has no target: a blank id does not reject its row, and two
    formulas of one composition are not merged into an averaged 'target' of their ids."""
    out, rejected, said = _featurized(tmp_path, "screen.csv", "sample_no,formula\n1,NaCl\n2,KCl\n,MgO\n5,Fe2O3\n"
                                                              "6,Fe4O6\n")
    assert rejected is None and "target" not in out.columns and "target taken" not in said
    assert out["sample_no"].tolist() == ["1", "2", "", "5", "6"]
    assert out["formula"].tolist() == ["NaCl", "KCl", "MgO", "Fe2O3", "Fe4O6"]
    for name in ("icsd_id", "mp-id", "uid", "entry", "Sample No"):
        table = pd.DataFrame({name: [3, 4, 5], "formula": ["NaCl", "KCl", "MgO"], "gap": [1.0, 2.0, 3.0]})
        table.to_csv(tmp_path / "t.csv", index=False)
        assert load_table(tmp_path / "t.csv").target_col == "gap", name  # not "ambiguous"


def test_ids_come_back_as_the_file_writes_them(tmp_path):
    """Whole-number ids with a blank cell (pandas reads them as floats: 123456.0), integers too long for a float
    (two distinct ids would read the same) and JSON strings ("007") are written back as they were."""
    out, _, _ = _featurized(tmp_path, "ids.csv", "icsd_id,uid,formula,target\n123456,90071992547409931,NaCl,-2.1\n"
                                                 ",90071992547409932,KCl,-2.2\n654321,,MgO,-3.1\n")
    assert out["icsd_id"].tolist() == ["123456", "", "654321"]
    assert out["uid"].tolist() == ["90071992547409931", "90071992547409932", ""]
    out, _, _ = _featurized(tmp_path, "ids.json", '[{"sample": "007", "formula": "NaCl", "target": -2.1},'
                                                  ' {"sample": "0100", "formula": "KCl", "target": "-2.25"}]')
    assert out["sample"].tolist() == ["007", "0100"] and out["target"].tolist() == ["-2.1", "-2.25"]


def test_the_formula_nan_is_sodium_nitride_not_a_missing_cell(tmp_path):
    """pandas reads NaN, NA, None as missing: in the formula column the file's words come back, and the
    parser decides (NaN is Na + N; NA holds no element A)."""
    out, rejected, _ = _featurized(tmp_path, "nan.csv", "formula,target\nNaN,-0.5\nNaCl,-2.1\nNA,-1\n,1\n")
    assert out["formula"].tolist() == ["NaN", "NaCl"]
    assert rejected["formula"].tolist() == ["NA", ""]
    assert "A" in rejected["reason"].iloc[0] and rejected["reason"].iloc[1] == "empty formula"


def test_a_target_beyond_float32_is_rejected_with_its_value(tmp_path):
    """1e300 cannot be trained on (the networks compute in float32; its square overflows float64): the row is
    rejected with the value and the run goes on without it."""
    out, rejected, _ = _featurized(tmp_path, "huge.csv", "formula,target\nNaCl,-2.1\nKCl,1e300\nMgO,-3.1\n")
    assert out["formula"].tolist() == ["NaCl", "MgO"]
    assert rejected["line"].tolist() == [3] and "target 1e+300 is beyond" in rejected["reason"].iloc[0]


def test_a_header_with_a_comma_inside_a_semicolon_file(tmp_path):
    out, _, _ = _featurized(tmp_path, "semi.csv", "id;formula;E_f (eV, per atom)\n1;NaCl;-2,1\n2;KCl;-2,25\n")
    assert out["target"].tolist() == ["-2.1", "-2.25"] and out["id"].tolist() == ["1", "2"]


@pytest.mark.parametrize("content, reason", [
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "gzip-compressed (name it .csv.gz)"),
    (b"PK\x03\x04\x14\x00\x06\x00", "a zip archive or a spreadsheet"),
    (b"PAR1\x15\x04\x15\x80", "a parquet file (name it .parquet)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "a PNG image, not a table"),
    ("formula,target\nNaCl,1\n".encode("utf-16"), "UTF-16 text (save it as UTF-8)"),
    (b"sep=;\nformula;target\nNaCl;1\n", "line 1 ('sep=;') is a spreadsheet's separator hint"),
])
def test_files_that_are_not_csv_text_are_named_for_what_they_are(tmp_path, content, reason):
    from conftest import one_line_error

    path = tmp_path / "data.csv"
    path.write_bytes(content)
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, reason)


def test_property_names_that_end_like_ids_are_still_targets(tmp_path):
    """Only _id/_no-like endings mark ids: refractive_index and coordination_number are properties."""
    for name in ("refractive_index", "coordination_number", "atomic_number"):
        pd.DataFrame({"formula": ["NaCl", "KCl", "MgO"], name: [1.5, 1.4, 1.7]}).to_csv(tmp_path / "t.csv",
                                                                                       index=False)
        assert load_table(tmp_path / "t.csv").target_col == name


def test_a_quoted_semicolon_in_a_comma_header(tmp_path):
    """Separators are counted as fields, quotes respected: a comma file whose column name holds ';' stays a
    comma file."""
    out, _, _ = _featurized(tmp_path, "q.csv", 'formula,"band gap (eV; PBE; indirect)"\nNaCl,5.0\nKCl,6.1\n')
    assert out["target"].tolist() == ["5.0", "6.1"] and out["formula"].tolist() == ["NaCl", "KCl"]


def test_a_measured_column_with_a_blank_stays_numeric(tmp_path):
    """Whole numbers with a blank cell come back as written only in an id column; temperature_K stays numbers."""
    (tmp_path / "t.csv").write_text("formula,target,temperature_K,sample_id\nNaCl,1,300,11\nKCl,2,,\nMgO,3,500,13\n")
    out = tmp_path / "t.parquet"
    assert CliRunner().invoke(app, ["featurize", str(tmp_path / "t.csv"), "-o", str(out)]).exit_code == 0
    frame = pd.read_parquet(out)
    assert pd.api.types.is_float_dtype(frame["temperature_K"]) and frame["temperature_K"].isna().sum() == 1
    assert frame["sample_id"].tolist() == ["11", "", "13"]
