"""`elemtl predict` with a tiny trained run: every input row, in order; rejected rows named."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import binary_table
from typer.testing import CliRunner

from elemnet_tl.checkpoint import MODEL_FILE
from elemnet_tl.predict import predict, predict_fractions

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS, pretrain

    folder = tmp_path_factory.mktemp("predict")
    data = folder / "train.csv"
    binary_table(120, seed=2).to_csv(data, index=False)
    config = replace(PRETRAIN_DEFAULTS, epochs=3, batch_size=32, patience=0)
    pretrain(data, folder / "run", arch="32x2-16x1", config=config, device="cpu", show_progress=False)
    assert (folder / "run" / MODEL_FILE).is_file()
    return folder / "run"


# line 2.. of the input file; rows 3 (HeF2), 5 (empty) and 7 (unparseable) cannot be predicted
INPUT = pd.DataFrame({
    "formula": ["NaCl", "HeF2", "Fe2O3", None, "Fe4O6", "Fe2O3)(", "MgO", "NaCl"],
    "band_gap": [8.5, 1.0, 2.2, 3.0, np.nan, 1.0, 7.8, 8.4],
})


def invoke(*args: str):
    from elemnet_tl.cli import app

    return runner.invoke(app, ["predict", *args])


def test_predict_cli_rows_in_input_order(tmp_path, run_dir):
    data = tmp_path / "in.csv"
    INPUT.to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    result = invoke(str(data), "--model", str(run_dir), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "8 rows read, 3 rejected, 5 predicted" in result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["line", "formula", "prediction", "target", "error"]
    assert frame["line"].tolist() == list(range(2, 10))
    assert frame["formula"].fillna("").tolist() == [f or "" for f in INPUT["formula"]]
    missing = frame["prediction"].isna().tolist()
    assert missing == [False, True, False, True, False, True, False, False]
    # same composition, same prediction; duplicates are not merged: every row is predicted
    pred = frame["prediction"]
    assert pred[2] == pytest.approx(pred[4], abs=1e-6)  # Fe2O3 and Fe4O6
    assert pred[0] == pred[7]  # NaCl twice
    # target and error where the input has a target
    np.testing.assert_allclose(frame["target"], INPUT["band_gap"])
    np.testing.assert_allclose(frame["error"], frame["prediction"] - frame["target"])
    assert np.isnan(frame["error"][4])  # Fe4O6 has no target but still a prediction
    # the rejected rows, with their lines in the input file
    rejected = pd.read_csv(tmp_path / "pred.rejected.csv")
    assert list(rejected.columns) == ["line", "formula", "reason"]
    assert rejected["line"].tolist() == [3, 5, 7]
    assert "He" in rejected["reason"][0]
    assert rejected["reason"][1] == "empty formula"
    assert rejected["reason"][2].startswith("unparseable")
    assert str(tmp_path / "pred.rejected.csv") in result.output


def test_predict_keeps_other_columns_and_names_unscored_targets(tmp_path, run_dir):
    """Ids ride along; a target cell that is not a number is named (no error for that row), and the
    summary says what the model predicts."""
    data = tmp_path / "in.csv"
    data.write_text("id,formula,target,prediction\nmp-1,NaCl,8.5,x\nmp-2,MgO,abc,y\nmp-3,LiF,\"1,5\",z\n"
                    "mp-4,KBr,,w\n")
    out = tmp_path / "pred.csv"
    result = invoke(str(data), "--model", str(run_dir), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["line", "formula", "id", "prediction (input)", "prediction", "target", "error"]
    assert frame["id"].tolist() == ["mp-1", "mp-2", "mp-3", "mp-4"]
    assert frame["prediction"].notna().all() and frame["error"].notna().tolist() == [True, False, False, False]
    assert "2 rows with a target that is not a finite number" in result.output  # the blank one is simply missing
    assert "line 3, target is not a number: 'abc'" in result.output
    assert "predicted: target" in result.output and "a typo or another unit" not in result.output
    wild = tmp_path / "wild.csv"
    wild.write_text("formula,target\nNaCl,8.5\nMgO,7.8\nLiF,13.6\nKBr,7.4\nCaO,1e30\n")
    flagged = invoke(str(wild), "--model", str(run_dir), "-o", str(tmp_path / "w.csv"), "--device", "cpu")
    assert flagged.exit_code == 0 and "line 6, 1e+30): a typo or another unit?" in " ".join(flagged.output.split())
    bundled = invoke(str(data), "--model", "bundled:band-gap", "-o", str(tmp_path / "b.csv"))
    assert "predicted: band gap (eV) (bundled:band-gap)" in bundled.output
    wrong = invoke(str(data), "--model", "bundled:nope", "-o", str(tmp_path / "c.csv"))
    assert wrong.exit_code == 2 and wrong.output.startswith("error: --model bundled:nope: no bundled model")


def test_predict_matches_the_model(tmp_path, run_dir):
    from elemnet_tl.compositions import parse_formulas

    data = tmp_path / "in.csv"
    pd.DataFrame({"formula": ["NaCl", "MgO", "LiF"]}).to_csv(data, index=False)
    result = predict(data, run_dir, tmp_path / "p.parquet", device="cpu")
    frame, featurized = result.table, result.featurized
    assert list(frame.columns) == ["line", "formula", "prediction"]  # no target in the input
    direct = predict_fractions(run_dir, parse_formulas(["NaCl", "MgO", "LiF"]).fractions, device="cpu")
    np.testing.assert_allclose(frame["prediction"], direct, rtol=1e-6)
    back = pd.read_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert not (tmp_path / "p.rejected.csv").exists()
    assert featurized.n_rejected == 0


def test_predict_wrong_model_dir(tmp_path):
    data = tmp_path / "in.csv"
    pd.DataFrame({"formula": ["NaCl"]}).to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    for model in (str(empty), str(tmp_path / "missing_run"), "bundled:no-such-model"):
        result = invoke(str(data), "--model", model, "-o", str(out))
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
        assert model.split(":")[-1] in lines[0]
    assert not out.exists()


def test_predict_all_rows_rejected(tmp_path, run_dir):
    data = tmp_path / "in.csv"
    pd.DataFrame({"formula": ["HeF2", "Xx2O3"]}).to_csv(data, index=False)
    result = invoke(str(data), "--model", str(run_dir), "-o", str(tmp_path / "pred.csv"))
    assert result.exit_code == 2
    assert "no usable rows" in result.output
    assert not (tmp_path / "pred.csv").exists()


def test_bundled_model_predicts_formation_energies_offline(tmp_path):
    """The shipped model loads (checked card, architecture, elements) and knows common oxides."""
    from elemnet_tl.checkpoint import load_model
    from elemnet_tl.predict import predict

    loaded = load_model("bundled")
    assert loaded.info.arch == "1024x4-512x3-256x3-128x3-64x2-32x1"
    assert loaded.card["metrics"]["test_mae"] < 0.1
    table = tmp_path / "oxides.csv"
    table.write_text("formula\nAl2O3\nMgO\nNaCl\nCu\n")
    frame = predict(table, "bundled", tmp_path / "pred.csv").table
    pred = dict(zip(frame["formula"], frame["prediction"]))
    assert -4.0 < pred["Al2O3"] < -3.0  # experimental -3.46 eV/atom
    assert -3.5 < pred["MgO"] < -2.5
    assert abs(pred["Cu"]) < 0.2  # an element: formation energy ~0
