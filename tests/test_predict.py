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


def predict_ok(tmp_path, run_dir, text: str, out: str = "pred.csv"):
    """Write ``text`` as ``in.csv``, predict it with ``run_dir`` into ``out`` (it must succeed); returns the
    CLI result and the input and output paths."""
    data = tmp_path / "in.csv"
    data.write_text(text)
    result = invoke(str(data), "--model", str(run_dir), "-o", str(tmp_path / out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    return result, data, tmp_path / out


def test_predict_cli_rows_in_input_order(tmp_path, run_dir):
    data = tmp_path / "in.csv"
    INPUT.to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    result = invoke(str(data), "--model", str(run_dir), "-o", str(out), "--device", "cpu", "--target-col", "band_gap")
    assert result.exit_code == 0, result.output
    assert "8 rows read, 3 rejected, 5 predicted" in result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["line", "formula", "prediction", "unseen_elements", "target", "error"]
    assert frame["line"].tolist() == list(range(2, 10))
    assert frame["formula"].fillna("").tolist() == [f or "" for f in INPUT["formula"]]
    missing = frame["prediction"].isna().tolist()
    assert missing == [False, True, False, True, False, True, False, False]
    # same composition, same prediction; duplicates are not merged: every row is predicted
    pred = frame["prediction"]
    assert pred[2] == pytest.approx(pred[4], abs=1e-6)  # Fe2O3 and Fe4O6
    assert pred[0] == pytest.approx(pred[7], rel=1e-6)  # NaCl twice (float32 network: equal to its precision)
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
    result, data, out = predict_ok(tmp_path, run_dir, "id,formula,target,prediction\nmp-1,NaCl,8.5,x\n"
                                   "mp-2,MgO,abc,y\nmp-3,LiF,\"1,5\",z\nmp-4,KBr,,w\n")
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["line", "formula", "id", "prediction (input)", "prediction", "unseen_elements",
                                   "target", "target (as written)", "error"]
    assert frame["id"].tolist() == ["mp-1", "mp-2", "mp-3", "mp-4"]
    assert frame["target (as written)"].fillna("").tolist() == ["", "abc", "1,5", ""]  # kept, not blanked
    parquet = tmp_path / "p.parquet"
    assert invoke(str(data), "--model", str(run_dir), "-o", str(parquet), "--device", "cpu").exit_code == 0
    assert pd.api.types.is_float_dtype(pd.read_parquet(parquet)["target"])  # numeric, whatever the cells
    assert frame["prediction"].notna().all() and frame["error"].notna().tolist() == [True, False, False, False]
    assert "2 rows with a target that is not a usable number" in result.output  # the blank one is simply missing
    assert "line 3, target is not a number: 'abc'" in result.output
    assert "predicted: target" in result.output and "a typo or another unit" not in result.output
    infinite = tmp_path / "inf.csv"
    infinite.write_text("formula,target\nNaCl,8.5\nMgO,inf\nLiF,-inf\n")
    inf_out = tmp_path / "inf_pred.csv"
    assert invoke(str(infinite), "--model", str(run_dir), "-o", str(inf_out), "--device", "cpu").exit_code == 0
    assert pd.read_csv(inf_out)["error"].notna().tolist() == [True, False, False]  # "error left empty", not -inf
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
    assert list(frame.columns) == ["line", "formula", "prediction", "unseen_elements"]  # no target in the input
    direct = predict_fractions(run_dir, parse_formulas(["NaCl", "MgO", "LiF"]).fractions, device="cpu")
    np.testing.assert_allclose(frame["prediction"], direct, rtol=1e-6)
    back = pd.read_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert not (tmp_path / "p.rejected.csv").exists()
    assert featurized.n_rejected == 0


def test_element_rows_and_unseen_elements():
    from elemnet_tl.compositions import parse_formulas
    from elemnet_tl.elements import element_rows, unseen_elements

    seen = element_rows(parse_formulas(["NaCl", "Na2O", "MgO"]).fractions)
    assert seen == {"O": 2, "Na": 2, "Mg": 1, "Cl": 1}
    assert unseen_elements(parse_formulas(["NaCl", "PuO2", "KBrO3", "Mg"]).fractions, seen) == ["", "Pu", "K Br", ""]


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory):
    """A 3-network fine-tune of the tiny run on rows made only of Na, Cl, Mg and O."""
    from elemnet_tl.finetune import FINETUNE_DEFAULTS, finetune

    folder = tmp_path_factory.mktemp("ensemble")
    data = folder / "train.csv"
    rng = np.random.default_rng(0)
    formulas = [f"Na{a}Cl{b}Mg{c}O{d}" for a, b, c, d in rng.integers(1, 5, (60, 4))]
    pd.DataFrame({"formula": formulas, "target": rng.normal(size=60)}).to_csv(data, index=False)
    config = replace(FINETUNE_DEFAULTS, epochs=3, batch_size=16, lr=1e-3)
    finetune(data, folder / "run", source=_tiny_source(folder), strategy="full", members=3, config=config,
             device="cpu", show_progress=False)
    return folder / "run"


def _tiny_source(folder):
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS, pretrain

    data = folder / "source.csv"
    binary_table(80, seed=3).to_csv(data, index=False)
    pretrain(data, folder / "source", arch="32x2-16x1", config=replace(PRETRAIN_DEFAULTS, epochs=2, batch_size=32),
             device="cpu", show_progress=False)
    return folder / "source"


def test_predict_names_unseen_elements_and_the_ensemble_spread(tmp_path, ensemble_dir):
    """An ensemble's table gives the spread of its members per row, and every row names the elements the
    fine-tune never trained on (here: all but Na, Cl, Mg, O); the summary says both."""
    import torch

    from elemnet_tl.checkpoint import load_model
    from elemnet_tl.compositions import parse_formulas

    data = tmp_path / "in.csv"
    data.write_text("formula,ensemble_std,target\nNaCl,a,1\nPuO2,b,2\nKBr,c,3\nHeF2,d,4\nMgO,e,5\n")
    out = tmp_path / "pred.csv"
    result = invoke(str(data), "--model", str(ensemble_dir), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(frame.columns) == ["line", "formula", "ensemble_std (input)", "prediction", "ensemble_std",
                                   "unseen_elements", "target", "error"]
    assert frame["unseen_elements"].fillna("").tolist() == ["", "Pu", "K Br", "", ""]  # HeF2: rejected
    kept = frame["prediction"].notna().to_numpy()
    assert kept.tolist() == [True, True, True, False, True]
    loaded = load_model(ensemble_dir)
    x = torch.as_tensor(parse_formulas(["NaCl", "PuO2", "KBr", "MgO"]).fractions, dtype=torch.float32)
    with torch.no_grad():
        members = loaded.model.member_outputs(x).numpy() * loaded.info.target_std + loaded.info.target_mean
    np.testing.assert_allclose(frame["ensemble_std"][kept], members.std(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(frame["prediction"][kept], members.mean(axis=0), rtol=1e-4, atol=1e-5)
    # one pass gives both columns; the predictions are exactly the ensemble's own (as compare-scratch scores it)
    direct = predict_fractions(ensemble_dir, parse_formulas(["NaCl", "PuO2", "KBr", "MgO"]).fractions, device="cpu")
    api = predict(data, ensemble_dir, device="cpu").table  # not through the CSV file's text
    np.testing.assert_array_equal(api["prediction"][kept].to_numpy(), direct)
    assert (frame["ensemble_std"][kept] > 0).all()
    text = " ".join(result.output.split())
    assert "ensemble_std: the spread of the 3 networks' predictions per row" in text
    assert ("2 rows contain elements absent from this model's training data (column unseen_elements; first: "
            "line 3, Pu)") in text


def test_single_network_and_old_cards_add_no_reliability_columns(tmp_path, run_dir):
    """One network has no spread; a card without the training elements (runs made before it was recorded)
    gives no unseen_elements column."""
    import json
    import shutil

    old = tmp_path / "old_run"
    shutil.copytree(run_dir, old)
    card = json.loads((old / "card.json").read_text())
    del card["data"]["train"]["element_rows"]
    (old / "card.json").write_text(json.dumps(card))
    data = tmp_path / "in.csv"
    data.write_text("formula,ensemble_std,unseen_elements\nNaCl,a,b\nPuO2,c,d\n")
    frame = predict(data, old, device="cpu").table
    # an input's spread or unseen elements are renamed even where this model writes none: beside this
    # prediction they would read as its own
    assert list(frame.columns) == ["line", "formula", "ensemble_std (input)", "unseen_elements (input)",
                                   "prediction"]
    result = invoke(str(data), "--model", str(old), "-o", str(tmp_path / "p.csv"), "--device", "cpu")
    assert result.exit_code == 0 and "ensemble_std" not in result.output and "unseen" not in result.output
    data.write_text("formula\nNaCl\nPuO2\n")
    assert predict(data, run_dir, device="cpu").table["unseen_elements"].tolist() == ["", "Pu"]


def test_predict_wrong_model_dir(tmp_path):
    data = tmp_path / "in.csv"
    pd.DataFrame({"formula": ["NaCl"]}).to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    card = empty / "card.json"
    card.write_text("{}")
    for model in (str(empty), str(tmp_path / "missing_run"), "bundled:no-such-model", str(card)):
        result = invoke(str(data), "--model", model, "-o", str(out))
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
        assert model.split(":")[-1] in lines[0]
    assert "not a model file" in lines[0] and f"give its folder {empty}" in lines[0]  # the card.json given
    assert not out.exists()


def test_a_folder_above_runs_names_them(tmp_path, run_dir):
    """compare-scratch keeps its runs four folders down (runs/METHOD/full/seedN): the folder above says where."""
    import shutil

    nested = tmp_path / "cmp" / "runs" / "tl-finetune" / "full" / "seed0"
    shutil.copytree(run_dir, nested)
    data = tmp_path / "in.csv"
    data.write_text("formula\nNaCl\n")
    for above in (tmp_path / "cmp", tmp_path / "cmp" / "runs" / "tl-finetune"):
        result = invoke(str(data), "--model", str(above), "-o", str(tmp_path / "p.csv"))
        assert result.exit_code == 2 and f"runs below it: {nested}" in " ".join(result.output.split()), result.output
    assert invoke(str(data), "--model", str(nested), "-o", str(tmp_path / "p.csv"), "--device", "cpu").exit_code == 0


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


def test_predict_passes_through_columns_named_like_its_own(tmp_path, run_dir):
    """An input column named error/line (or a pandas index without a header) rides along under its name or
    renamed; none is scored as a target, none is dropped; mixed-type ids still write as parquet."""
    result, _, out = predict_ok(tmp_path, run_dir, ",formula,error,line\n0,NaCl,0.05,L1\n1,KCl,0.1,L2\n"
                                "2,MgO,0.2,L3\n")
    assert "MAE" not in result.output and "target taken from" not in result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["line", "formula", "Unnamed: 0", "error", "line (input)", "prediction",
                                   "unseen_elements"]
    assert frame["line (input)"].tolist() == ["L1", "L2", "L3"] and frame["error"].tolist() == [0.05, 0.1, 0.2]
    text = tmp_path / "text_error.csv"
    text.write_text("formula,error\nNaCl,e1\nKCl,e2\n")
    ok = invoke(str(text), "--model", str(run_dir), "-o", str(tmp_path / "t.csv"), "--device", "cpu")
    assert ok.exit_code == 0, ok.output
    mixed = tmp_path / "mixed.json"
    mixed.write_text('[{"formula":"NaCl","id":1},{"formula":"KCl","id":"b2"},{"formula":"MgO","id":null}]')
    pq = invoke(str(mixed), "--model", str(run_dir), "-o", str(tmp_path / "m.parquet"), "--device", "cpu")
    assert pq.exit_code == 0, pq.output
    assert pd.read_parquet(tmp_path / "m.parquet")["id"].tolist() == ["1", "b2", None]


def test_a_rejection_report_never_overwrites_the_input(tmp_path, run_dir):
    """``-o out.csv`` writes ``out.rejected.csv``: refused when that is the input (a report fixed by hand)."""
    from conftest import one_line_error

    data = tmp_path / "out.rejected.csv"
    INPUT.to_csv(data, index=False)
    before = data.read_bytes()
    for command in (["featurize", str(data), "-o", str(tmp_path / "out.csv")],
                    ["predict", str(data), "--model", str(run_dir), "-o", str(tmp_path / "out.parquet")]):
        one_line_error(command, "out.rejected.csv", "is the input file")
        assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.rejected.csv"]


def test_predict_copies_ids_as_the_file_writes_them(tmp_path, run_dir):
    """Zero-padded ids and NA-like words of a ride-along column survive (they join back); numbers spelled
    otherwise (1.50, 1e-3, 0.24779229146290827) stay numbers."""
    _, data, out = predict_ok(tmp_path, run_dir, "sample_id,formula,batch,notes,x,y\n"
                              "007,NaCl,1.50,NA,1e-3,0.24779229146290827\n0012,KCl,1.20,fine,2.5,3\n")
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert frame["sample_id"].tolist() == ["007", "0012"] and frame["notes"].tolist() == ["NA", "fine"]
    table = predict(data, run_dir, device="cpu").table
    assert table["sample_id"].tolist() == ["007", "0012"] and table["notes"].tolist() == ["NA", "fine"]
    for col, values in (("batch", [1.5, 1.2]), ("x", [1e-3, 2.5]), ("y", [0.24779229146290827, 3.0])):
        assert pd.api.types.is_float_dtype(table[col]) and table[col].tolist() == pytest.approx(values, rel=1e-15)
    semi = tmp_path / "semi.csv"
    semi.write_text("formula;gap;id\nNaCl;1,5;007\nKCl;2,25;012\n")
    table = predict(semi, run_dir, device="cpu").table
    assert table["id"].tolist() == ["007", "012"]
    assert table.get("target", table.get("gap")).tolist() == [1.5, 2.25]


def test_named_datasets_are_not_read_again_as_text(tmp_path):
    """A named dataset's provenance path is its archive (mp-transport: a .tar.xz that reads as a CSV), not
    a file the user wrote: only a file given as the data is re-read for its cells as written."""
    from dataclasses import replace as with_

    from elemnet_tl.datasets import cells_as_written, load_table

    data = tmp_path / "ids.csv"
    data.write_text("id,formula\n007,NaCl\n012,KCl\n")
    table = load_table(data, require_target=False)
    assert cells_as_written(table, ["id"])["id"].tolist() == ["007", "012"]
    assert cells_as_written(with_(table, source="mp-transport"), ["id"]) == {}


def test_predict_output_read_back_keeps_every_column_and_finds_no_false_target(tmp_path, run_dir):
    """predict on its own output, twice: 'line (input)' existed already (a pandas error, exit 2), an input
    'prediction' was lost to a second 'prediction (input)', and the empty unseen_elements column or a renamed
    prediction was taken as the target."""
    first = tmp_path / "p1.csv"
    (tmp_path / "f.csv").write_text("formula\nNaCl\nMgO\n")
    assert invoke(str(tmp_path / "f.csv"), "--model", str(run_dir), "-o", str(first), "--device", "cpu").exit_code == 0
    second, third = tmp_path / "p2.csv", tmp_path / "p3.csv"
    for source, out in ((first, second), (second, third)):
        result = invoke(str(source), "--model", str(run_dir), "-o", str(out), "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert "target taken from" not in result.output and "target" not in pd.read_csv(out).columns
    columns = list(pd.read_csv(third).columns)
    assert columns.count("prediction") == 1 and "prediction (input)" in columns and "prediction (input 2)" in columns
    assert "line (input)" in columns and "line (input 2)" in columns and len(columns) == len(set(columns))
    kept = pd.read_csv(third)
    np.testing.assert_allclose(kept["prediction (input)"], pd.read_csv(first)["prediction"])  # the first run's, kept


def test_predict_takes_only_the_model_target_as_a_target(tmp_path, run_dir, ensemble_dir):
    """A numeric id column of a candidates file was taken as measured values (an MAE of 5023 against ids,
    the id column lost); a column named as the model's training target was not scored. predict takes a
    column named 'target' or as the model's target (or --target-col), and says which column it did not take."""
    result, data, out = predict_ok(tmp_path, run_dir, "cand,formula\n5001,NaCl\n5002,MgO\n")
    frame = pd.read_csv(out)
    assert frame["cand"].tolist() == [5001, 5002] and "target" not in frame.columns and "MAE" not in result.output
    assert "column 'cand' not taken as a target" in result.output and "--target-col 'cand'" in result.output
    scored = invoke(str(data), "--model", str(run_dir), "-o", str(tmp_path / "s.csv"), "--device", "cpu",
                    "--target-col", "cand")
    assert scored.exit_code == 0 and "MAE against the input's target" in scored.output
    named = tmp_path / "named.csv"  # the ensemble was trained on a column named 'target'; this run on 'Eg (eV)'
    pd.DataFrame({"formula": ["NaCl", "MgO"], "Eg (eV)": [8.5, 7.8], "no": [1, 2]}).to_csv(named, index=False)
    from elemnet_tl.finetune import FINETUNE_DEFAULTS, finetune

    train = tmp_path / "train.csv"
    rng = np.random.default_rng(1)
    pd.DataFrame({"formula": [f"Na{a}Cl{b}" for a, b in rng.integers(1, 6, (30, 2))],
                  "Eg (eV)": rng.normal(size=30)}).to_csv(train, index=False)
    finetune(train, tmp_path / "eg", source=ensemble_dir, strategy="head", members=1, device="cpu",
             config=replace(FINETUNE_DEFAULTS, epochs=1, batch_size=16), show_progress=False)
    frame = predict(named, tmp_path / "eg", device="cpu").table
    assert frame["target"].tolist() == [8.5, 7.8] and frame["no"].tolist() == [1, 2]
