"""Tests of elemnet_tl.features (pretrained activations as features) and elemnet_tl.regressors (CV selection,
regressor export)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TRAIN_ELEMENTS, binary_table

from elemnet_tl import feature_runs as FR
from elemnet_tl import features as F
from elemnet_tl import regressors as R
from elemnet_tl.checkpoint import ModelInfo, save_model
from elemnet_tl.errors import InputError
from elemnet_tl.featurize import load_and_prepare
from elemnet_tl.model import ElemNet

ARCH = "16x2-8x1"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    """A tiny 'pretrained' network; fc1 unit 3 is dead (always 0) so constant columns get dropped."""
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    with torch.no_grad():
        model.layers["fc1"].weight[3] = 0.0
        model.layers["fc1"].bias[3] = -1.0
    path = tmp_path_factory.mktemp("src") / "tiny.safetensors"
    save_model(path, model, ModelInfo(arch=ARCH, dropout=0.0, target_mean=0.0, target_std=1.0))
    return str(path)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict:
    where = tmp_path_factory.mktemp("data")
    paths = {"train": where / "train.csv", "test": where / "test.csv", "no_target": where / "formulas.csv"}
    binary_table(90, seed=1).to_csv(paths["train"], index=False)
    binary_table(30, seed=2).to_csv(paths["test"], index=False)
    binary_table(10, seed=3)[["formula"]].to_csv(paths["no_target"], index=False)
    return paths


@pytest.fixture
def small_grids(monkeypatch):
    """Smaller grids and ensembles: the selection logic is the same, the tests stay fast."""
    monkeypatch.setattr(R, "RF_TREES", 10)
    monkeypatch.setattr(R, "GBR_STAGES", (10, 20))
    monkeypatch.setattr(R, "N_REPEATS_SMALL", 1)


def _xy(path):
    f = load_and_prepare(path)
    return f.fractions, f.target


def test_feature_shapes_names_and_dead_units(source, tables):
    x, _ = _xy(tables["train"])
    pf = F.PretrainedFeatures(source=source, layers="fc1,fc3").fit(x)
    assert pf.layers_ == ["fc1", "fc3"]
    assert pf.feature_names_all_[:2] == ["fc1_0000", "fc1_0001"] and pf.feature_names_all_[-1] == "fc3_0007"
    assert len(pf.feature_names_all_) == 16 + 8
    assert "fc1_0003" not in pf.feature_names_out_  # dead unit dropped
    out = pf.transform(x)
    assert out.shape == (len(x), len(pf.feature_names_out_)) and out.dtype == np.float64
    assert (np.ptp(out, axis=0) > 0).all()
    assert list(pf.get_feature_names_out()) == pf.feature_names_out_
    assert pf.transform_all(x).shape == (len(x), 24)
    # same as the network's own activations (float32 forward pass) to float32 precision
    net = ElemNet(ARCH)
    from safetensors.torch import load_file

    net.load_state_dict(load_file(source))
    ref = net.activations(torch.as_tensor(x), ["fc3"])["fc3"].numpy()
    np.testing.assert_allclose(pf.transform_all(x)[:, 16:], ref, rtol=1e-5, atol=1e-6)


def test_with_pa_appends_physical_attributes(source, tables):
    from elemnet_tl.physical import feature_labels

    x, _ = _xy(tables["train"])
    pf = F.PretrainedFeatures(source=source, layers="fc2", with_pa=True).fit(x)
    assert pf.feature_names_all_[16:] == feature_labels()
    assert pf.pa_medians_.shape == (len(feature_labels()),)
    assert np.isfinite(pf.transform(x)).all()


def test_auto_layer_is_a_candidate_with_cv_table(source, tables):
    x, y = _xy(tables["train"])
    pf = F.PretrainedFeatures(source=source, layers="auto", seed=0).fit(x, y)
    candidates = F.candidate_layers(ElemNet(ARCH))
    assert candidates == ["fc1", "fc2", "fc3"]
    assert [r["candidate"] for r in pf.cv_table_] == candidates
    assert all(np.isfinite(r["cv_mae"]) and r["stage"] == "layer" for r in pf.cv_table_)
    best = min(pf.cv_table_, key=lambda r: r["cv_mae"])["candidate"]
    assert pf.layers_ == [best]
    with pytest.raises(InputError):
        F.PretrainedFeatures(source=source, layers="auto").fit(x)  # auto needs targets
    with pytest.raises(InputError):
        F.PretrainedFeatures(source=source, layers="fc9").fit(x, y)


def test_candidate_layers_of_default_elemnet():
    assert F.candidate_layers(ElemNet()) == ["fc1", "fc4", "fc7", "fc10", "fc13", "fc16"]


def test_cv_folds_cover_every_row_and_follow_the_seed():
    folds = R.cv_folds(50, seed=3)
    assert len(folds) == R.N_FOLDS * R.N_REPEATS_SMALL
    counts = np.bincount(np.concatenate([va for _, va in folds]), minlength=50)
    assert (counts == R.N_REPEATS_SMALL).all()
    again = R.cv_folds(50, seed=3)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))
    assert len(R.cv_folds(2000, seed=0)) == R.N_FOLDS
    with pytest.raises(InputError):
        R.cv_folds(5, seed=0)


def test_ridge_cv_matches_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    for p in (5, 60):  # primal and dual solutions
        x, y = rng.normal(size=(40, p)), rng.normal(size=40)
        x[:, 0] = 0.3 + 1e-17 * rng.normal(size=40)  # varies by rounding only: constant to both scalers
        folds = R.cv_folds(40, 0)[:2]
        maes = R.ridge_cv(x, y, folds, alphas=(0.5, 20.0))
        for j, alpha in enumerate((0.5, 20.0)):
            for k, (tr, va) in enumerate(folds):
                est = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[tr], y[tr])
                assert maes[k, j] == pytest.approx(np.abs(est.predict(x[va]) - y[va]).mean(), rel=1e-9)


ROUNDTRIP = [
    ("ridge", {"alpha": 0.3}),
    ("knn", {"n_neighbors": 4, "weights": "uniform"}),
    ("knn", {"n_neighbors": 4, "weights": "distance"}),
    ("svr", {"C": 3.0, "gamma": 0.2, "epsilon": 0.1}),
    ("rf", {"n_estimators": 12, "max_features": "sqrt", "min_samples_leaf": 1}),
    ("gbr", {"n_estimators": 25, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8, "max_features": "sqrt"}),
]


@pytest.mark.parametrize("kind,params", ROUNDTRIP, ids=[f"{k}-{i}" for i, (k, _) in enumerate(ROUNDTRIP)])
def test_regressor_export_import_roundtrip(kind, params, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 7))
    y = np.sin(x[:, 0]) + x[:, 1] ** 2 + 0.1 * rng.normal(size=150)
    x_new = rng.normal(size=(60, 7))
    x_new[:5] = x[:5]  # exact training points: zero distances for knn, thresholds for trees
    est = R.make_regressor(kind, params, seed=0).fit(x, y)
    scalars, arrays = R.export_regressor(kind, est, x, y)
    R.save_regressor(tmp_path, scalars, {**arrays, "feature_mask": np.ones(7, bool)}, {"features": {}})
    meta, loaded = R.load_regressor_files(tmp_path)
    loaded.pop("feature_mask")
    assert all(a.dtype != object for a in loaded.values())
    rebuilt = R.ExportedRegressor(meta["regressor"], loaded)
    # knn: distances from |a|^2 - 2ab + |b|^2 here vs scikit-learn's own formula; agree to ~1e-7
    tol = 1e-6 if kind == "knn" else 1e-9
    for data in (x, x_new):
        np.testing.assert_allclose(rebuilt.predict(data), est.predict(data), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["rf", "gbr"])
def test_saved_trees_know_their_width_when_the_last_feature_is_never_split_on(kind, tmp_path):
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(size=(80, 3)), np.zeros(80)])  # the last column: nothing to split on
    y = x[:, 0] - x[:, 1]
    params = dict(ROUNDTRIP)[kind] if kind == "gbr" else {"n_estimators": 10, "min_samples_leaf": 1,
                                                           "max_features": 1.0}
    est = R.make_regressor(kind, params, seed=0).fit(x, y)
    scalars, arrays = R.export_regressor(kind, est, x, y)
    R.save_regressor(tmp_path, scalars, arrays, {})
    meta, loaded = R.load_regressor_files(tmp_path)
    rebuilt = R.ExportedRegressor(meta["regressor"], loaded)
    assert rebuilt.min_features() == 3  # what the trees use
    assert rebuilt.n_features == 4 and rebuilt.accepts(4) and not rebuilt.accepts(3)
    legacy = R.ExportedRegressor({k: v for k, v in meta["regressor"].items() if k != "n_features"}, loaded)
    assert legacy.accepts(4) and not legacy.accepts(2)  # written before the width was recorded
    np.testing.assert_allclose(rebuilt.predict(x), est.predict(x), rtol=1e-9, atol=1e-9)


def test_regressor_files_are_checked(tmp_path):
    est = R.make_regressor("ridge", {"alpha": 1.0}).fit(np.eye(4), np.arange(4.0))
    scalars, arrays = R.export_regressor("ridge", est)
    R.save_regressor(tmp_path, scalars, arrays, {})
    (tmp_path / R.REGRESSOR_NPZ).write_bytes(b"not an archive")
    with pytest.raises(InputError, match="sha256"):
        R.load_regressor_files(tmp_path)


def test_features_only(source, tables, tmp_path):
    out = tmp_path / "feat"
    result = FR.extract_features(tables["train"], out, source=source, layers="fc2", regressor="none",
                                device="cpu", show_progress=False)
    frame = pd.read_parquet(out / F.FEATURES_FILE)
    assert list(frame.columns[:3]) == ["formula", "target", "fc2_0000"]
    assert frame.shape[1] == 2 + 16
    assert not (out / R.REGRESSOR_JSON).exists() and not (out / R.REGRESSOR_NPZ).exists()
    card = json.loads((out / "card.json").read_text())
    assert card["metrics"] == {"val_mae": None, "test_mae": None, "test_rmse": None, "test_r2": None}
    assert result.regressor == "none" and result.layers == ["fc2"]
    assert FR.is_feature_run(out)
    with pytest.raises(InputError, match="regressor none"):
        FR.load_feature_model(out)
    # a table without a target is fine when nothing needs one
    FR.extract_features(tables["no_target"], tmp_path / "nt", source=source, layers="fc1", regressor="none",
                       device="cpu", show_progress=False)
    assert "target" not in pd.read_parquet(tmp_path / "nt" / F.FEATURES_FILE).columns


def test_fit_test_scoring_and_reload(source, tables, tmp_path):
    out = tmp_path / "run"
    result = FR.extract_features(tables["train"], out, source=source, layers="auto", regressor="knn",
                                test=tables["test"], seed=0, device="cpu", show_progress=False)
    card = json.loads((out / "card.json").read_text())
    assert set(card["metrics"]) == {"val_mae", "test_mae", "test_rmse", "test_r2"}
    assert card["metrics"]["test_mae"] is not None and card["metrics"]["val_mae"] > 0
    assert "cross-validated" in card["metrics_note"]
    assert card["source"]["sha256"] and card["source"]["given"] == source
    assert card["regressor"]["name"] == "knn" and card["regressor"]["params"]["n_neighbors"] in R.KNN_NEIGHBORS
    stages = [r["stage"] for r in card["selection"]["cv_table"]]
    assert stages == ["layer"] * 3 + ["regressor"]
    assert result.layers[0] in ("fc1", "fc2", "fc3")
    x_test, y_test = _xy(tables["test"])
    assert len(result.test_predictions) == len(y_test) == 30  # test rows are never deduplicated
    assert np.mean(np.abs(result.test_predictions - y_test)) == pytest.approx(card["metrics"]["test_mae"])
    saved = pd.read_csv(out / F.TEST_PREDICTIONS_FILE)
    np.testing.assert_allclose(saved["prediction"], result.test_predictions, rtol=1e-12)
    model = FR.load_feature_model(out)
    np.testing.assert_allclose(model.predict(x_test), result.test_predictions, rtol=1e-9, atol=1e-9)
    # no clobbering without overwrite
    with pytest.raises(InputError, match="overwrite"):
        FR.extract_features(tables["train"], out, source=source, regressor="ridge", device="cpu",
                           show_progress=False)


def test_auto_is_reproducible_and_chooses_the_best(source, tables, tmp_path, small_grids):
    runs = [FR.extract_features(tables["train"], tmp_path / f"r{i}", source=source, seed=4, device="cpu",
                               show_progress=False) for i in range(2)]
    a, b = runs
    regs = a.cv_table[a.cv_table["stage"] == "regressor"]
    assert list(regs["candidate"]) == list(R.REGRESSORS)
    assert a.regressor == regs.loc[regs["cv_mae"].idxmin(), "candidate"]
    assert a.metrics["val_mae"] == pytest.approx(regs["cv_mae"].min())
    assert a.metrics["test_mae"] is None
    assert a.layers == b.layers and a.regressor == b.regressor
    assert a.metrics["val_mae"] == b.metrics["val_mae"]
    x, _ = _xy(tables["train"])
    np.testing.assert_array_equal(FR.load_feature_model(a.out_dir).predict(x), b.model.predict(x))


def test_user_errors(source, tables, tmp_path):
    with pytest.raises(InputError, match="target"):
        FR.extract_features(tables["no_target"], tmp_path / "a", source=source, device="cpu", show_progress=False)
    with pytest.raises(InputError, match="--regressor"):
        FR.extract_features(tables["train"], tmp_path / "b", source=source, regressor="xgb", device="cpu",
                           show_progress=False)
    with pytest.raises(InputError, match="--layers"):
        FR.extract_features(tables["train"], tmp_path / "c", source=source, layers="fc1,fc99", device="cpu",
                           show_progress=False)
    with pytest.raises(InputError):
        FR.extract_features(tables["train"], tmp_path / "d", source=tmp_path / "nowhere", device="cpu",
                           show_progress=False)
    assert not any((tmp_path / d).exists() for d in "abcd")  # nothing written on a user error
    with pytest.raises(InputError, match="source network"):  # never overwrite the source's own directory
        FR.extract_features(tables["train"], Path(source).parent, source=source, regressor="ridge", device="cpu",
                           show_progress=False, overwrite=True)
    assert Path(source).is_file()


def _extract_from_a_copy(source, tables, tmp_path, layers: str):
    """Features from a copy of ``source`` (so the test can change or delete it): (copy, out dir, result)."""
    import shutil

    src = tmp_path / "copy.safetensors"
    shutil.copy(source, src)
    out = tmp_path / "run"
    result = FR.extract_features(tables["train"], out, source=src, layers=layers, regressor="ridge", device="cpu",
                                show_progress=False)
    return src, out, result


def test_load_refuses_a_changed_network_file(source, tables, tmp_path):
    src, out, result = _extract_from_a_copy(source, tables, tmp_path, "fc3")
    x, _ = _xy(tables["test"])
    before = result.model.predict(x)
    torch.manual_seed(5)
    save_model(src, ElemNet(ARCH), ModelInfo(arch=ARCH, dropout=0.0, target_mean=0.0, target_std=1.0))
    np.testing.assert_array_equal(FR.load_feature_model(out).predict(x), before)  # the source no longer matters
    saved = out / F.NETWORK_FILE
    blob = bytearray(saved.read_bytes())
    blob[-1] ^= 1
    saved.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="sha256"):
        FR.load_feature_model(out)
    saved.unlink()
    with pytest.raises(InputError, match="missing"):
        FR.load_feature_model(out)


def test_a_hand_edited_feature_run_is_named_in_one_line(source, tables, tmp_path):
    _, out, _ = _extract_from_a_copy(source, tables, tmp_path, "fc3")
    meta = json.loads((out / R.REGRESSOR_JSON).read_text())
    del meta["regressor"]
    (out / R.REGRESSOR_JSON).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="incomplete or corrupted feature run .KeyError"):
        FR.load_feature_model(out)


def _as_legacy(out: Path) -> None:
    """Make ``out`` look as written before the network was saved in it (the source named by path only)."""
    for name in ("card.json", R.REGRESSOR_JSON):
        record = json.loads((out / name).read_text())
        del record["source"]["stored"]
        (out / name).write_text(json.dumps(record))
    (out / F.NETWORK_FILE).unlink()


def test_legacy_directory_loads_its_source_by_path(source, tables, tmp_path):
    src, out, result = _extract_from_a_copy(source, tables, tmp_path, "fc2")
    _as_legacy(out)
    x, _ = _xy(tables["test"])
    np.testing.assert_array_equal(FR.load_feature_model(out).predict(x), result.model.predict(x))
    torch.manual_seed(5)
    save_model(src, ElemNet(ARCH), ModelInfo(arch=ARCH, dropout=0.0, target_mean=0.0, target_std=1.0))
    with pytest.raises(InputError, match="changed"):
        FR.load_feature_model(out)
    src.unlink()
    with pytest.raises(InputError, match="unavailable"):
        FR.load_feature_model(out)


def _keys(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return set(fh.keys())


def test_directory_survives_moving_the_source_run(source_dir, tables, tmp_path):
    """A run directory as source: only fc1..the deepest chosen layer is saved in OUT, and predictions stay
    bit-identical after the source is moved and deleted and OUT is copied elsewhere."""
    import shutil

    from elemnet_tl.predict import predict

    src = tmp_path / "src_run"
    shutil.copytree(source_dir, src)
    out = tmp_path / "feat"
    FR.extract_features(tables["train"], out, source=src, layers="fc2", regressor="rf", seed=0, device="cpu",
                       show_progress=False)
    card = json.loads((out / "card.json").read_text())
    stored = card["source"]["stored"]
    assert card["source"]["given"] == str(src.resolve())  # provenance
    assert stored["file"] == F.NETWORK_FILE and stored["layers"] == ["fc1", "fc2"] and not stored["attributes"]
    saved = out / F.NETWORK_FILE
    assert _keys(saved) == {"layers.fc1.weight", "layers.fc1.bias", "layers.fc2.weight", "layers.fc2.bias"}
    from safetensors.torch import load_file

    params = (86 * 32 + 32) + (32 * 32 + 32)  # TINY_ARCH 32x2-16x1 up to fc2
    tensors = load_file(str(saved))
    assert all(t.dtype == torch.float32 for t in tensors.values())  # as in the source, not float64
    assert sum(t.numel() for t in tensors.values()) == params
    assert 4 * params < saved.stat().st_size < (src / "model.safetensors").stat().st_size
    assert F.is_network_file(saved) and not F.is_network_file(src / "model.safetensors")
    with pytest.raises(InputError, match="elemnet_tl model"):  # not mistaken for a full model
        from elemnet_tl.checkpoint import load_model

        load_model(saved)

    before = predict(tables["test"], out).table
    moved = tmp_path / "elsewhere"
    shutil.move(str(src), moved)
    after_move = predict(tables["test"], out).table
    shutil.rmtree(moved)
    copy = tmp_path / "copied_feat"
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    after_copy = predict(tables["test"], copy).table
    for later in (after_move, after_copy):
        np.testing.assert_array_equal(later["prediction"].to_numpy(), before["prediction"].to_numpy())
    assert before["prediction"].notna().all()
    # a regressor has no ensemble spread; its card records the training rows' elements
    assert "ensemble_std" not in before and before["unseen_elements"].notna().all()
    card = json.loads((copy / "card.json").read_text())
    assert set(card["data"]["train"]["element_rows"]) <= set(TRAIN_ELEMENTS)


def test_attribute_input_and_ensemble_sources_are_saved(tables, tmp_path):
    """The physical-attribute input module of the source is saved with the layers; an ensemble gives its first
    member's features."""
    import shutil

    from elemnet_tl.checkpoint import FRACTIONS_AND_ATTRIBUTES
    from elemnet_tl.model import ElemNetEnsemble

    x, _ = _xy(tables["train"])
    torch.manual_seed(1)
    members = [ElemNet(ARCH, attributes=True) for _ in range(2)]
    for m in members:
        m.add_attributes(x)
        with torch.no_grad():
            m.attributes.proj.weight.normal_(0.0, 0.1)
    info = dict(arch=ARCH, dropout=0.0, target_mean=0.0, target_std=1.0, inputs=FRACTIONS_AND_ATTRIBUTES)
    x_test, _ = _xy(tables["test"])
    for label, model, n in (("single", members[0], 1), ("ensemble", ElemNetEnsemble(members), 2)):
        run = tmp_path / f"src_{label}"
        run.mkdir()
        save_model(run / "model.safetensors", model, ModelInfo(**info, members=n))
        out = tmp_path / f"feat_{label}"
        result = FR.extract_features(tables["train"], out, source=run, layers="fc1", regressor="ridge", device="cpu",
                                    show_progress=False)
        stored = json.loads((out / "card.json").read_text())["source"]["stored"]
        assert stored["layers"] == ["fc1"] and stored["attributes"]
        keys = _keys(out / F.NETWORK_FILE)
        assert keys == {"layers.fc1.weight", "layers.fc1.bias", "attributes.fill", "attributes.mean",
                        "attributes.std", "attributes.lo", "attributes.hi", "attributes.proj.weight"}
        expected = members[0].double().activations(torch.as_tensor(x_test, dtype=torch.float64), ["fc1"])["fc1"]
        members[0].float()
        pf = FR.load_feature_model(out).features
        np.testing.assert_allclose(pf.transform_all(x_test), expected.numpy(), rtol=1e-12, atol=1e-12)
        shutil.rmtree(run)
        np.testing.assert_array_equal(FR.load_feature_model(out).predict(x_test), result.model.predict(x_test))


def test_bundled_source_is_recorded_by_name(tables, tmp_path):
    from elemnet_tl.predict import predict

    out = tmp_path / "gap"
    result = FR.extract_features(tables["train"], out, source="bundled:band-gap", layers="fc16", regressor="ridge",
                                test=tables["test"], device="cpu", show_progress=False)
    card = json.loads((out / "card.json").read_text())
    src = card["source"]
    assert src["given"] == "bundled:band-gap" and "stored" not in src
    assert src["path"] == "elemnet_tl/pretrained/mp_gap/model.safetensors"  # not a site-packages path
    assert json.loads((out / R.REGRESSOR_JSON).read_text())["source"]["given"] == "bundled:band-gap"
    assert not (out / F.NETWORK_FILE).exists()
    table = predict(tables["test"], out).table
    np.testing.assert_allclose(table["prediction"], result.test_predictions, rtol=1e-9, atol=1e-9)


def test_from_auto_chooses_a_bundled_model(tables, tmp_path):
    from elemnet_tl.sources import bundled_sources

    out = tmp_path / "auto"
    result = FR.extract_features(tables["train"], out, source="auto", layers="fc16", regressor="ridge",
                                device="cpu", show_progress=False)
    card = json.loads((out / "card.json").read_text())
    choice = card["source_choice"]
    assert set(choice["probe"]) == set(bundled_sources())
    assert choice["name"] == card["source"]["given"]
    assert choice["name"] in (min(choice["probe"], key=choice["probe"].get), bundled_sources()[0])
    assert "stored" not in card["source"] and not (out / F.NETWORK_FILE).exists()
    x, _ = _xy(tables["train"])
    np.testing.assert_array_equal(FR.load_feature_model(out).predict(x), result.model.predict(x))
    # without a target there is nothing to probe: the default bundled model
    plain = FR.extract_features(tables["no_target"], tmp_path / "nt", source="auto", layers="fc16",
                                regressor="none", device="cpu", show_progress=False)
    assert plain.card["source"]["given"] == bundled_sources()[0] and "source_choice" not in plain.card
    with pytest.raises(InputError, match="bundled:NAME"):
        FR.extract_features(tables["train"], tmp_path / "x", source=tmp_path / "auto_typo", device="cpu",
                           show_progress=False)


def test_choose_source_fits_the_transformers_it_is_given(tables, monkeypatch):
    """extract-features loads each bundled network once (to check the source early) and hands those
    transformers to the probe, which must choose exactly as with fresh ones and load nothing again."""
    from elemnet_tl.sources import bundled_sources, choose_source

    x, y = _xy(tables["train"])
    fresh = choose_source(x, y, 0, layers="fc16", max_rows=None)
    given = [F.PretrainedFeatures(source=s, layers="fc16", seed=0) for s in bundled_sources()]
    for t in given:
        assert t.network is not None
    loads = []
    monkeypatch.setattr(F.PretrainedFeatures, "_load_network", lambda self: loads.append(self.source))
    chosen, record, fitted = choose_source(x, y, 0, layers="fc16", max_rows=None, transformers=given)
    assert loads == []
    assert [fitted[s] for s in bundled_sources()] == given
    assert (chosen, record) == fresh[:2]


def test_distance_knn_on_near_duplicate_rows_exports():
    """Rows a hair apart (distances that are rounding noise) make a distance-weighted kNN's predictions on
    its own training rows depend on how distances are rounded; the export check must not call that a
    broken export (it checks the neighbours with uniform weights), and a real export fault still fails."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 8)) * 10
    x = np.vstack([a, a + 1e-7 * rng.normal(size=a.shape)])
    y = np.concatenate([np.zeros(60), np.full(60, 10.0)])
    est = R.make_regressor("knn", {"n_neighbors": 5, "weights": "distance"}).fit(x, y)
    exported = R.ExportedRegressor(*R.export_regressor("knn", est, x, y))
    assert np.abs(exported.predict(x) - est.predict(x)).max() > 1.0  # rounding noise decides these rows
    FR.check_export("knn", est, exported, x, y)  # not a broken export
    np.testing.assert_allclose(exported.predict(x[:5] + 1.0), est.predict(x[:5] + 1.0))  # away from the rows: equal
    broken = R.ExportedRegressor(exported.scalars, {**exported.arrays, "fit_y": exported.arrays["fit_y"][::-1]})
    with pytest.raises(RuntimeError, match="does not reproduce"):
        FR.check_export("knn", est, broken, x, y)


def test_cli_command(source, tables, tmp_path):
    import typer
    from typer.testing import CliRunner

    from elemnet_tl.cli import handles_errors
    from elemnet_tl.cli_features import extract_features_command

    app = typer.Typer()
    app.command("extract-features")(handles_errors(extract_features_command))
    app.command("noop")(lambda: None)
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["extract-features", str(tables["train"]), "-o", str(out), "--from", source,
                              "--layers", "fc1", "--regressor", "ridge", "--test", str(tables["test"]), "-q",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "CV MAE" in res.output and "test MAE" in res.output and "regressor ridge" in res.output
    assert FR.is_feature_run(out)
    # -q hides the steps only: the data summary and the test file's summary still print, as in every command
    assert "90 rows read" in res.output and "test file" in res.output
    assert "cross-validating" not in res.output and "choosing a layer" not in res.output
    res = runner.invoke(app, ["extract-features", str(tables["no_target"]), "-o", str(tmp_path / "x"),
                              "--from", source, "--device", "cpu"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["extract-features", "--help"], env={"COLUMNS": "300", "TERM": "dumb"})
    assert res.exit_code == 0 and "bundled:band-gap" in res.output and "auto" in res.output


@pytest.mark.parametrize("kind", ["rf", "gbr", "svr"])
def test_regressors_do_not_depend_on_the_target_unit(kind):
    """Trees stop splitting below an absolute impurity (2e-16): the target is standardized first, so a
    target in units of 1e-20 gets the same CV choice and predictions, scaled."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 5))
    y = np.sin(x[:, 0]) + x[:, 1] ** 2 + 0.1 * rng.normal(size=120)
    folds = R.cv_folds(len(y), seed=0)
    rows = [R.cv_regressor(kind, x, y * unit, folds, seed=0) for unit in (1.0, 1e-20)]
    assert rows[0]["params"] == rows[1]["params"]
    assert rows[1]["cv_mae"] == pytest.approx(rows[0]["cv_mae"] * 1e-20, rel=1e-6)
    preds = []
    for unit in (1.0, 1e-20):
        est = R.make_regressor(kind, rows[0]["params"], seed=0).fit(x, y * unit)
        exported = R.ExportedRegressor(*R.export_regressor(kind, est, x, y * unit))
        np.testing.assert_allclose(exported.predict(x), est.predict(x), rtol=1e-9)
        preds.append(exported.predict(x) / unit)
    # equal but for rounding in the split search (a tie broken the other way moves a few rows)
    assert np.abs(preds[1] - preds[0]).mean() < 0.01 * np.std(preds[0])
    assert np.std(preds[1]) > 0.5  # not one constant leaf


def test_export_check_passes_knn_on_repeated_rows_and_catches_small_target_errors():
    """Repeated feature rows with different targets tie the k-th neighbour (either is right); a lost
    intercept is caught even when the target is 1e-9 small."""
    rng = np.random.default_rng(4)
    x = np.vstack([np.repeat(rng.normal(size=(30, 4)), 4, axis=0), rng.normal(size=(60, 4))])
    y = rng.normal(size=len(x))
    for weights in ("uniform", "distance"):
        est = R.make_regressor("knn", {"n_neighbors": 5, "weights": weights}).fit(x, y)
        FR.check_export("knn", est, R.ExportedRegressor(*R.export_regressor("knn", est, x, y)), x, y)
    x = rng.normal(size=(60, 3))
    y = (5.0 + x[:, 0]) * 1e-9
    est = R.make_regressor("ridge", {"alpha": 1.0}).fit(x, y)
    scalars, arrays = R.export_regressor("ridge", est)
    FR.check_export("ridge", est, R.ExportedRegressor(scalars, arrays), x, y)
    with pytest.raises(RuntimeError, match="does not reproduce"):
        FR.check_export("ridge", est, R.ExportedRegressor({**scalars, "intercept": 0.0}, arrays), x, y)


def test_a_constant_target_is_not_probed(tables):
    """Every source and layer predicts a constant exactly: no probe, the default source, and a reason
    that says why (not a tie of zeros read as a choice)."""
    from elemnet_tl.finetune import source_closeness
    from elemnet_tl.sources import bundled_sources, choose_source, probe_source

    x, y = _xy(tables["train"])
    constant = np.full_like(y, 1.5)
    chosen, record, fitted = choose_source(x, constant, seed=0)
    assert chosen == bundled_sources()[0] and "constant" in record["reason"] and fitted == {}
    assert probe_source("bundled", x, constant, seed=0) is None
    assert source_closeness(False, None) == (False, "no probe of the source's layers (too few rows or a "
                                                    "constant target)")


def test_trees_saved_by_format_1_still_load(tmp_path):
    """Format /1 trees were fitted on the raw target (no y_mean/y_scale): they predict as saved; /2 is
    written now, so that an older reader refuses trees it would mis-scale."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(80, 3))
    y = 10 * x[:, 0] + 100
    est = R.make_regressor("rf", {"n_estimators": 5, "max_features": 1.0, "min_samples_leaf": 1}).fit(x, y)
    scalars, arrays = R.export_regressor("rf", est, x, y)
    R.save_regressor(tmp_path, scalars, arrays, {})
    meta = json.loads((tmp_path / R.REGRESSOR_JSON).read_text())
    assert meta["format"] == "elemnet_tl.features/2"
    meta.update(format="elemnet_tl.features/1",
                regressor={k: v for k, v in meta["regressor"].items() if k not in ("y_mean", "y_scale")})
    (tmp_path / R.REGRESSOR_JSON).write_text(json.dumps(meta))
    old, loaded = R.load_regressor_files(tmp_path)
    standardized = R.ExportedRegressor(old["regressor"], loaded).predict(x)
    np.testing.assert_allclose(standardized * est.transformer_.scale_[0] + est.transformer_.mean_[0],
                               est.predict(x), rtol=1e-9)
    meta["format"] = "elemnet_tl.features/3"
    (tmp_path / R.REGRESSOR_JSON).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not an elemnet_tl feature model"):
        R.load_regressor_files(tmp_path)


def test_a_fitted_transformer_stays_on_what_it_was_fitted_on(source, tables, tmp_path):
    """Pickled, then its source file replaced: refused (it used to transform with the new network and the
    old mask); set_params(with_pa=/source=) after fit: fit again; not fitted: scikit-learn's NotFittedError."""
    import pickle
    import shutil

    from sklearn.exceptions import NotFittedError

    src = tmp_path / "copy.safetensors"
    shutil.copy(source, src)
    x, y = _xy(tables["train"])
    with pytest.raises(NotFittedError):
        F.PretrainedFeatures(source=str(src), layers="fc2").transform(x)
    fitted = F.PretrainedFeatures(source=str(src), layers="fc2").fit(x, y)
    blob = pickle.dumps(fitted)
    np.testing.assert_array_equal(pickle.loads(blob).transform(x), fitted.transform(x))
    with pytest.raises(NotFittedError, match="call fit again"):
        pickle.loads(blob).set_params(with_pa=True).transform(x)
    torch.manual_seed(7)
    save_model(src, ElemNet(ARCH), ModelInfo(arch=ARCH, dropout=0.0, target_mean=0.0, target_std=1.0))
    with pytest.raises(InputError, match="source network changed since"):
        pickle.loads(blob).transform(x)


def test_formulas_or_nan_targets_given_to_the_transformer_are_one_line(source, tables):
    x, y = _xy(tables["train"])
    with pytest.raises(InputError, match="formulas become fractions"):
        F.PretrainedFeatures(source=source, layers="fc2").fit(["Fe2O3", "NaCl"])
    y = y.copy()
    y[3] = np.nan
    with pytest.raises(InputError, match=f"1 of {len(y)} targets are NaN"):
        F.PretrainedFeatures(source=source, layers="auto").fit(x, y)


@pytest.mark.parametrize("kind", ["ridge", "knn", "svr"])
def test_scaled_regressors_keep_a_new_row_near_the_training_range(kind):
    """A column that barely varies in training (Magpie's 1e-5 moments of Ti and Sc) and an ordinary value
    of it in a new row (Fe's 2.1): a z-score of 1e6, which ridge turned into a wild prediction."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    x = np.column_stack([1e-5 + 1e-6 * rng.random(60), rng.normal(size=60)])
    y = x[:, 1] + 2e5 * (x[:, 0] - 1e-5)
    x_new = np.array([[2.1, 0.3], [1e-5, 0.3]])
    params = dict(ROUNDTRIP)[kind]
    est = R.make_regressor(kind, params).fit(x, y)
    pred = est.predict(x_new)
    span = y.max() - y.min()
    assert np.all(np.abs(pred - y.mean()) < 3 * span), pred
    rebuilt = R.ExportedRegressor(*R.export_regressor(kind, est, x, y))
    np.testing.assert_allclose(rebuilt.predict(x_new), pred, rtol=1e-6, atol=1e-6)
    if kind == "ridge":
        unbounded = Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=0.3))]).fit(x, y)
        assert abs(unbounded.predict(x_new)[0] - y.mean()) > 1e3 * span  # what the bound prevents


def test_scaled_regressors_clone_and_pickle_like_any_scikit_learn_estimator():
    """The bounded scaler is a module-level class: scikit-learn's clone (grid searches) and pickling (joblib
    workers) of a pipeline that holds it work, and the copy bounds as the original does."""
    import pickle

    from sklearn.base import clone

    rng = np.random.default_rng(4)
    x = np.column_stack([1e-5 + 1e-6 * rng.random(40), rng.normal(size=40)])
    y = x[:, 1] + 2e5 * (x[:, 0] - 1e-5)
    est = R.make_regressor("ridge", {"alpha": 0.3}).fit(x, y)
    x_new = np.array([[2.1, 0.3]])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(x_new), est.predict(x_new))
    np.testing.assert_allclose(clone(est).fit(x, y).predict(x_new), est.predict(x_new))


def test_a_regressor_no_better_than_the_mean_is_pointed_out(source, tables, tmp_path, small_grids):
    """A target the features cannot learn (noise): the CV MAE is no better than predicting each fold's training
    mean, and the run says so (as finetune does) and records the yardstick."""
    from typer.testing import CliRunner

    from elemnet_tl.cli import app

    noise = pd.read_csv(tables["train"])
    noise["target"] = np.random.default_rng(0).normal(size=len(noise))
    path = tmp_path / "noise.csv"
    noise.to_csv(path, index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["extract-features", str(path), "-o", str(tmp_path / "run"), "--from", source,
                                 "--layers", "fc1", "--regressor", "rf", "--device", "cpu", "-q"])  # warned anyway
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    baseline = card["selection"]["cv_mae_of_training_mean"]
    assert card["metrics"]["val_mae"] >= baseline > 0
    out = " ".join(result.output.split())
    assert f"is no better than predicting the training mean ({baseline:.4g} on the same folds)" in out
    assert card["regressor"]["reason"].startswith("given (--regressor); its one setting: CV MAE")
    # a learnable target: no warning, and the yardstick is larger than the CV MAE
    result = runner.invoke(app, ["extract-features", str(tables["train"]), "-o", str(tmp_path / "ok"), "--from",
                                 source, "--layers", "fc1", "--regressor", "ridge", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "ok" / "card.json").read_text())
    assert card["metrics"]["val_mae"] < card["selection"]["cv_mae_of_training_mean"]
    assert "no better than" not in result.output
    assert "chosen among" in card["regressor"]["reason"]


def test_test_predictions_keep_the_test_files_ids(source, tables, tmp_path):
    """test_predictions.csv joins back to the test file: its id column as written, and an input column named
    prediction kept under another name."""
    test = pd.read_csv(tables["test"])
    test.insert(0, "id", [f"{i:03d}" for i in range(len(test))])
    test["prediction"] = 1.0
    path = tmp_path / "test.csv"
    test.to_csv(path, index=False)
    result = FR.extract_features(tables["train"], tmp_path / "run", source=source, layers="fc1", regressor="ridge",
                                 test=path, device="cpu", show_progress=False)
    saved = pd.read_csv(tmp_path / "run" / F.TEST_PREDICTIONS_FILE, dtype={"id": str})
    assert saved.columns.tolist() == ["line", "formula", "target", "id", "prediction (input)", "prediction"]
    assert saved["id"].tolist() == test["id"].tolist() and (saved["prediction (input)"] == 1.0).all()
    np.testing.assert_allclose(saved["prediction"], result.test_predictions, rtol=1e-12)


def test_extract_features_from_auto_on_a_constant_target(tables, tmp_path):
    """--from auto probes nothing on a constant target: the default source is fitted (a KeyError before)."""
    constant = pd.read_csv(tables["train"]).assign(target=1.5)
    path = tmp_path / "const.csv"
    constant.to_csv(path, index=False)
    result = FR.extract_features(path, tmp_path / "run", source="auto", layers="auto", regressor="ridge",
                                 device="cpu", show_progress=False)
    assert "constant" in result.card["source_choice"]["reason"] and result.card["metrics"]["val_mae"] == 0
