"""User errors: exit code 2, one line naming the file / column and the reason, no traceback, no partial output."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import BAND_GAPS, one_line_error
from typer.testing import CliRunner

from elemnet_tl.cli import app

runner = CliRunner()


def only_files(folder, *names: str) -> None:
    """``folder`` holds exactly ``names``: no output, rejected report or temp file was left behind."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


@pytest.fixture
def good_csv(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("formula,band_gap\nNaCl,8.5\nMgO,7.8\nLiF,13.6\nKBr,7.4\nCaO,7.1\nSrO,5.9\nBaO,4.4\n"
                    "ZnS,3.8\nCdS,2.5\nGaN,3.4\nAlN,6.2\nSi,1.1\n")
    return path


def test_missing_input_file(tmp_path):
    missing = tmp_path / "nope.csv"
    out = one_line_error(["featurize", str(missing), "-o", str(tmp_path / "o.csv")], missing, "no such file")
    assert "named dataset" in out
    only_files(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, "empty")
    only_files(tmp_path, "empty.csv")


def test_non_utf8_input_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"formula,target\nNaCl,1\nK\xe9Cl,2\n")
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, "line 3 is not UTF-8")
    only_files(tmp_path, "latin1.csv")


def test_spreadsheet_input_says_save_as_csv(tmp_path):
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, "save the sheet as CSV")
    only_files(tmp_path, "sheet.xlsx")


def test_semicolon_separated_csv_with_decimal_commas_is_read(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("formula;target\nNaCl;1,5\nKCl;2\n")
    result = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["formula"].tolist() == ["NaCl", "KCl"] and out["target"].tolist() == [1.5, 2.0]


def test_header_only(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("formula,target\n")
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, "no rows")
    only_files(tmp_path, "header.csv")


def test_missing_formula_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("material,target\nNaCl,1.0\n")
    out = one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, "no formula column",
                         "material", "--formula-col")
    assert "formula" in out


def test_formula_col_option_fixes_it(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("material,target\nNaCl,1.0\n")
    result = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "o.csv"), "--formula-col", "material"])
    assert result.exit_code == 0, result.output


def test_ambiguous_target_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("formula,band_gap,density\nNaCl,8.5,2.16\n")
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, "ambiguous target column",
                   "band_gap", "density", "--target-col")


def test_a_guessed_target_column_is_named(tmp_path):
    """An energy column with units is not numeric: the count column is then the only numeric one and
    becomes the target; the run says so (and the card records it) instead of silently training on it."""
    path = tmp_path / "t.csv"
    path.write_text("formula,natoms,energy\nNaCl,2,-2.1 eV\nMgO,2,-3.0 eV\nFe2O3,5,-1.7 eV\n")
    result = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 0, result.output
    assert "target taken from column 'natoms'" in result.output and "--target-col" in result.output
    from elemnet_tl.featurize import load_and_prepare

    assert load_and_prepare(path).record()["target_column"] == "natoms"
    named = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "o2.csv"), "--target-col", "natoms"])
    assert named.exit_code == 0 and "target taken" not in named.output


def test_no_numeric_target_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("formula,notes\nNaCl,rock salt\n")
    one_line_error(["pretrain", str(path), "-o", str(tmp_path / "run")], path, "no numeric target column")


def test_target_col_not_present(tmp_path, good_csv):
    one_line_error(["featurize", str(good_csv), "-o", str(tmp_path / "o.csv"), "--target-col", "e_form"],
                   good_csv, "no column 'e_form'", "band_gap")


def test_all_rows_rejected(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("formula,target\nHeF2,1.0\nXx2O3,2.0\n,3.0\n")
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], path, "no usable rows", "3 rejected",
                   "He")
    only_files(tmp_path, "bad.csv")


def test_output_inside_a_file(tmp_path, good_csv):
    blocker = tmp_path / "afile.txt"
    blocker.write_text("not a folder")
    out = blocker / "out.csv"
    one_line_error(["featurize", str(good_csv), "-o", str(out)], out, "cannot write")
    only_files(tmp_path, "in.csv", "afile.txt")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, good_csv):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        one_line_error(["featurize", str(good_csv), "-o", str(folder / "o.csv")], folder / "o.csv", "cannot write")
        only_files(folder)
    finally:
        folder.chmod(0o755)


def test_output_is_a_directory(tmp_path, good_csv):
    folder = tmp_path / "features.csv"
    folder.mkdir()
    one_line_error(["featurize", str(good_csv), "-o", str(folder)], folder, "cannot write")
    only_files(folder)


@pytest.mark.parametrize("name", ["out.txt", "out.xlsx", "out", "out.json"])
def test_bad_output_extension(tmp_path, good_csv, name):
    one_line_error(["featurize", str(good_csv), "-o", str(tmp_path / name)], name, ".csv", ".parquet")
    only_files(tmp_path, "in.csv")


def test_input_is_a_directory(tmp_path):
    one_line_error(["featurize", str(tmp_path), "-o", str(tmp_path / "o.csv")], tmp_path, "directory")


def test_unknown_duplicates_rule(tmp_path, good_csv):
    one_line_error(["featurize", str(good_csv), "-o", str(tmp_path / "o.csv"), "--duplicates", "lowest"],
                   "lowest", "most-stable")


def test_failed_write_leaves_nothing(tmp_path, good_csv, monkeypatch):
    """The disk fills up half-way through writing: no output, no temp file, no rejected report."""

    def half_write(self, path, *args, **kwargs):
        with open(path, "w") as fh:
            fh.write("formula,target,H")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_write)
    out = tmp_path / "out" / "features.csv"
    one_line_error(["featurize", str(good_csv), "-o", str(out)], out, "cannot write", "No space left on device")
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_overwrite_keeps_old_output_on_failure(tmp_path):
    """An existing output is replaced only by a complete new one."""
    out = tmp_path / "features.csv"
    result = runner.invoke(app, ["featurize", str(BAND_GAPS), "-o", str(out)])
    assert result.exit_code == 0, result.output
    before = out.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("formula,target\nHeF2,1.0\n")
    one_line_error(["featurize", str(bad), "-o", str(out)], "no usable rows")
    assert out.read_bytes() == before
    only_files(tmp_path, "features.csv", "features.merged.csv", "bad.csv")  # the first run merged 2 rows


def test_error_message_keeps_square_brackets(tmp_path):
    missing = tmp_path / "[data]" / "nope.csv"
    one_line_error(["featurize", str(missing), "-o", str(tmp_path / "o.csv")], missing)


def test_output_is_the_input(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("formula,target\nNaCl,1.0\nMgO,2.0\n")
    before = path.read_bytes()
    one_line_error(["featurize", str(path), "-o", str(path)], path, "is the input file")
    one_line_error(["predict", str(path), "-o", str(path)], path, "is the input file")
    assert path.read_bytes() == before
    only_files(tmp_path, "data.csv")


def test_text_cell_in_target_does_not_silently_switch_target(tmp_path):
    """'-3.1 eV' makes e_form a text column; band_gap must not silently become the target."""
    path = tmp_path / "t.csv"
    path.write_text("formula,e_form,band_gap\nNaCl,-2.13,8.5\nMgO,-3.1 eV,7.8\nLiF,-3.19,13.6\n")
    one_line_error(["featurize", str(path), "-o", str(tmp_path / "o.csv")], "ambiguous target column", "e_form",
                   "band_gap")


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_too_few_usable_rows_to_train(tmp_path, command):
    table = tmp_path / "one.csv"
    pd.DataFrame({"formula": ["NaCl", "Xx2O"], "target": [1.0, 2.0]}).to_csv(table, index=False)
    one_line_error([command, str(table), "-o", str(tmp_path / "run")], "one.csv", "1 usable row ", "at least 10")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    nine = tmp_path / "nine.csv"  # nine compositions (NaCl and Na2Cl2 are one): one short
    pd.DataFrame({"formula": ["NaCl", "Na2Cl2", "MgO", "LiF", "KBr", "CaO", "SrO", "BaO", "ZnS", "CdS"],
                  "target": np.arange(10.0)}).to_csv(nine, index=False)
    one_line_error([command, str(nine), "-o", str(tmp_path / "run9")], "9 usable rows", "at least 10")
    assert not (tmp_path / "run9" / "model.safetensors").exists()


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1"])
def test_bad_validation_fraction(tmp_path, value):
    table = tmp_path / "two.csv"
    pd.DataFrame({"formula": ["NaCl", "KCl", "LiF"], "target": [1.0, 2.0, 3.0]}).to_csv(table, index=False)
    one_line_error(["pretrain", str(table), "-o", str(tmp_path / "run"), "--val-fraction", value],
                   "--val-fraction", "between 0 and 1")


@pytest.mark.parametrize("command,option,value,says", [
    ("pretrain", "--epochs", "0", "--epochs must be >= 1, got 0"),
    ("pretrain", "--batch-size", "0", "--batch-size must be >= 1"),
    ("pretrain", "--lr", "-1", "--lr must be > 0"),
    ("pretrain", "--lr", "nan", "--lr must be > 0"),
    ("pretrain", "--ema", "-1", "--ema must be >= 0"),
    ("pretrain", "--weight-decay", "-0.1", "--weight-decay must be >= 0"),
    ("pretrain", "--patience", "-2", "--patience must be >= 0"),
    ("finetune", "--epochs", "-3", "--epochs must be >= 1"),
    ("finetune", "--epochs", "0", "--epochs must be >= 1, got 0"),
    ("finetune", "--batch-size", "0", "--batch-size must be >= 1, got 0"),
    ("finetune", "--lr", "0", "--lr must be > 0, got 0"),
    ("pretrain", "--dropout", "2", "--dropout must be in [0, 1), got 2"),
    ("finetune", "--device", "gpu", "--device 'gpu': choose auto, cpu, cuda or cuda:N"),
    ("finetune", "--seed", "-1", "--seed must be between 0 and 2147483647, got -1"),
    ("pretrain", "--seed", "4294967296", "--seed must be between 0 and 2147483647, got 4294967296"),
    ("extract-features", "--seed", "-1", "--seed must be between 0 and 2147483647, got -1"),
])
def test_bad_training_option(tmp_path, good_csv, command, option, value, says):
    """A training option out of range is one line before anything is read or written."""
    one_line_error([command, str(good_csv), "-o", str(tmp_path / "run"), option, value], says)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_an_output_holding_a_run_is_refused_before_the_data_are_read(tmp_path, command):
    run = tmp_path / "run"
    run.mkdir()
    (run / "card.json").write_text("{}")
    # the data file does not exist: the refusal comes first (finetune's --from auto probe takes seconds)
    one_line_error([command, str(tmp_path / "not_read.csv"), "-o", str(run)], run, "already holds a run")
    assert sorted(p.name for p in run.iterdir()) == ["card.json"]


def test_a_misspelt_strategy_is_refused_before_the_data_are_read(tmp_path):
    # the data file does not exist: the strategy's spelling is checked first (no read, no source probe)
    one_line_error(["finetune", str(tmp_path / "not_read.csv"), "-o", str(tmp_path / "run"), "--strategy", "fast"],
                   "--strategy 'fast'", "choose from auto, full")
    assert not (tmp_path / "run").exists()


def featurized_ok(tmp_path, name: str, text: str) -> pd.DataFrame:
    """Write ``text`` to ``name``, featurize it into ``f.csv`` (it must succeed) and read that back."""
    path = tmp_path / name
    path.write_text(text)
    result = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "f.csv")])
    assert result.exit_code == 0, result.output
    return pd.read_csv(tmp_path / "f.csv")


def test_semicolon_file_with_decimal_commas_rejects_only_its_bad_cells(tmp_path):
    """pandas reads a decimal-comma column as text when one cell is not a number; the numbers still count."""
    kept = featurized_ok(tmp_path, "semi.csv",
                         "formula;band_gap\nGe3As4;0,7593\nAlGaN2;n/a\nKNbS2;1,2 eV\nNaCl;5,1\nMgO;7\nKCl;-1,5e-1\n")
    assert kept["target"].tolist() == [0.7593, 5.1, 7.0, -0.15]
    rejected = pd.read_csv(tmp_path / "f.rejected.csv")
    assert rejected["line"].tolist() == [3, 4] and "'1,2 eV'" in rejected["reason"][1]


@pytest.mark.parametrize("option,value,reason", [("--val-fraction", "0.99", "leaves 1 row of 12 to train on"),
                                                 ("--test-fraction", "0.5", "leaves 6 of 12 rows")])
def test_a_split_that_leaves_too_few_training_rows_is_refused(tmp_path, good_csv, option, value, reason):
    command = "finetune" if option == "--val-fraction" else "pretrain"
    one_line_error([command, str(good_csv), "-o", str(tmp_path / "run"), option, value, "--device", "cpu"],
                   good_csv, option, reason)
    assert not (tmp_path / "run").exists()


def test_header_spaces_comment_lines_and_json_lines_get_clear_handling(tmp_path):
    kept = featurized_ok(tmp_path, "spaced.csv", " formula ,gap\nNaCl,1.5\nKCl,2.5\nMgO,7.5\n")
    assert kept["formula"].tolist() == ["NaCl", "KCl", "MgO"]
    commented = tmp_path / "commented.csv"
    commented.write_text("# measured band gaps, source: notebook\nformula,gap\nNaCl,1.5\n")
    one_line_error(["featurize", str(commented), "-o", str(tmp_path / "c.csv")], commented,
                   "line 1 looks like a comment")
    lines = tmp_path / "records.json"
    lines.write_text('{"formula": "NaCl", "gap": 1}\n{"formula": "KCl", "gap": 2}\n')
    one_line_error(["featurize", str(lines), "-o", str(tmp_path / "j.csv")], lines, "name the file .jsonl")


def test_validation_overlap_is_called_validation(tmp_path, good_csv):
    from elemnet_tl.featurize import input_warnings, load_and_prepare

    data = load_and_prepare(good_csv)
    (warning,) = input_warnings(data, data, "validation")
    assert "12 of 12 validation rows" in warning and "the validation score" in warning


def test_a_numeric_formula_column_is_pointed_out(tmp_path, good_csv):
    one_line_error(["featurize", str(good_csv), "-o", str(tmp_path / "f.csv"), "--formula-col", "band_gap"],
                   good_csv, "the formula column 'band_gap' holds numbers: check --formula-col")


def test_rejected_lines_count_a_quoted_field_that_spans_lines(tmp_path):
    """A note with a line break (quoted) moves every later row down a line in the file: the report says so."""
    path = tmp_path / "notes.csv"
    path.write_text('formula,target,notes\nNaCl,1.0,ok\nKCl,2.0,"line one\nline two"\nMgO,3.0,x\nXx2O3,4.0,y\n'
                    "CaO,,z\n")
    result = runner.invoke(app, ["featurize", str(path), "-o", str(tmp_path / "f.csv")])
    assert result.exit_code == 0, result.output
    rejected = pd.read_csv(tmp_path / "f.rejected.csv")
    assert rejected["line"].tolist() == [6, 7] and rejected["formula"].tolist() == ["Xx2O3", "CaO"]


def test_long_multiline_cells_spaced_column_options_and_json_arrays_load(tmp_path):
    """A 200,000-character quoted note with a line break (pandas reads it; the line-counting pass must
    too); --target-col given with the header's spaces; a JSON array of arrays (columns 0, 1)."""
    from elemnet_tl.datasets import load_table

    note = tmp_path / "note.csv"
    note.write_text(f'formula, gap ,notes\nNaCl,1.5,"{"x" * 200_000}\nmore"\nKCl,2.5,ok\n')
    table = load_table(note, target_col=" gap ")
    assert table.frame["line"].tolist() == [2, 4] and table.frame["target"].tolist() == [1.5, 2.5]
    arrays = tmp_path / "arrays.json"
    arrays.write_text('[["NaCl", 1.5], ["KCl", 2.5]]')
    table = load_table(arrays, formula_col="0", target_col="1")
    assert table.frame["formula"].tolist() == ["NaCl", "KCl"] and table.frame["target"].tolist() == [1.5, 2.5]


def test_resume_and_overwrite_together_are_refused(tmp_path, good_csv):
    for command in ("pretrain", "compare-scratch"):  # finetune has no --resume
        one_line_error([command, str(good_csv), "-o", str(tmp_path / "run"), "--resume", "--overwrite"],
                       "--resume", "--overwrite", "not both")
    assert not (tmp_path / "run").exists()


def test_test_file_with_its_own_target_name_is_scored(tmp_path):
    """`--target-col gap` names the training file's column; a test file that calls it 'Eg' is still scored
    (was: "no column 'gap'", with no option to name the test file's column), and the run says which column."""
    import json

    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    pd.read_csv(BAND_GAPS).rename(columns={"band_gap": "gap"}).assign(other=1.0).to_csv(train, index=False)
    pd.read_csv(BAND_GAPS).head(12).rename(columns={"band_gap": "Eg"}).to_csv(test, index=False)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["pretrain", str(train), "-o", str(run), "--target-col", "gap",
                                      "--test", str(test), "--arch", "16x2", "--epochs", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "target taken from column 'Eg' (it has no column 'gap'" in " ".join(result.output.split())
    card = json.loads((run / "card.json").read_text())
    assert card["data"]["test"]["target_column"] == "Eg" and card["data"]["test"]["kept"] == 12
    assert np.isfinite(card["metrics"]["test_mae"])


def test_version_goes_to_stdout():
    """`elemtl --version > file` keeps the version (it went to stderr)."""
    import subprocess
    import sys

    from elemnet_tl import __version__

    done = subprocess.run([sys.executable, "-m", "elemnet_tl.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"elemtl {__version__}" and not done.stderr


def test_keep_head_with_reinit_is_refused(tmp_path):
    """reinit starts every layer fresh: --keep-head would be recorded as kept while nothing was."""
    path = tmp_path / "t.csv"
    pd.read_csv(BAND_GAPS).to_csv(path, index=False)
    one_line_error(["finetune", str(path), "-o", str(tmp_path / "run"), "--strategy", "reinit+pa", "--keep-head"],
                   "--keep-head has no effect with --strategy reinit+pa")
    assert not (tmp_path / "run").exists()


def test_a_network_too_large_for_memory_is_refused(tmp_path):
    """--arch 100000x100 failed with 'internal error: ... can't allocate memory', exit 1."""
    one_line_error(["pretrain", str(BAND_GAPS), "-o", str(tmp_path / "run"), "--arch", "100000x100"],
                   "--arch 100000x100", "parameters need about", "GiB")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_pretrain_epochs_below_one_one_rule(tmp_path, value):
    one_line_error(["pretrain", str(BAND_GAPS), "-o", str(tmp_path / "run"), "--epochs", value],
                   f"--epochs must be >= 1, got {value}")


def test_a_feature_directory_as_a_start_is_named(tmp_path):
    """--from an extract-features directory said only 'no model here'."""
    import json

    from elemnet_tl.feature_runs import COMMAND_KIND

    features = tmp_path / "fx"
    features.mkdir()
    (features / "card.json").write_text(json.dumps({"command_kind": COMMAND_KIND}))
    one_line_error(["finetune", str(BAND_GAPS), "-o", str(tmp_path / "run"), "--from", str(features)],
                   str(features), "an extract-features directory", "pretrain or finetune run directory")


def test_an_empty_target_column_is_named(tmp_path):
    """A band_gap column whose cells are all blank, NaN, n/a or ?: "no numeric target column" alone read as if
    the column were missing; the message names it and says it holds no number."""
    path = tmp_path / "gaps.csv"
    path.write_text("formula,band_gap,notes\nNaCl,,bad\nKCl,NaN,ok\nMgO,n/a,fine\nCaO,?,\n")
    one_line_error(["finetune", str(path), "-o", str(tmp_path / "run")], path,
                   "no numeric target column ('band_gap': no number in any row); columns are formula, band_gap, notes")
