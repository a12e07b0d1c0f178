"""Physical attributes as a second input of a fine-tuned ElemNet (``+pa`` strategies)."""

from __future__ import annotations

import functools
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_ARCH, binary_table
from typer.testing import CliRunner

from elemnet_tl.attributes import AttributeInputs, attribute_count, standardized_attributes
from elemnet_tl.checkpoint import FRACTIONS, FRACTIONS_AND_ATTRIBUTES, load_model
from elemnet_tl.cli import app
from elemnet_tl.compositions import parse_formulas
from elemnet_tl.finetune import FINETUNE_DEFAULTS
from elemnet_tl.finetune import finetune as finetune_any
from elemnet_tl.model import ElemNet, ElemNetEnsemble
from elemnet_tl.physical import physical_attributes
from elemnet_tl.predict import predict_fractions
from elemnet_tl.transfer import Strategy, parse_strategy, strategy_phases

QUICK = replace(FINETUNE_DEFAULTS, epochs=4)
finetune = functools.partial(finetune_any, members=1, config=QUICK, show_progress=False)


def fractions(n: int = 60, seed: int = 0) -> np.ndarray:
    return parse_formulas(binary_table(n, seed)["formula"]).fractions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pa")
    binary_table(200, seed=2).drop_duplicates("formula").to_csv(folder / "train.csv", index=False)
    binary_table(40, seed=3).to_csv(folder / "test.csv", index=False)
    return folder


def test_standardized_attributes_use_training_statistics():
    train, test = fractions(80, 0), fractions(30, 1)
    a, b = standardized_attributes(train, test)
    assert a.shape == (80, attribute_count()) and b.shape == (30, attribute_count())
    assert np.isfinite(a).all() and np.isfinite(b).all()
    varying = physical_attributes(train).std(axis=0) > 1e-9
    assert np.allclose(a[:, varying].mean(axis=0), 0, atol=1e-9)
    assert np.allclose(a[:, varying].std(axis=0), 1, atol=1e-6)
    # the test rows are scaled with the training statistics, not their own
    raw_test = physical_attributes(test)
    raw_train = np.where(np.isfinite(physical_attributes(train)), physical_attributes(train), np.nan)
    col = int(np.nonzero(varying & np.isfinite(raw_test).all(axis=0) & np.isfinite(raw_train).all(axis=0))[0][0])
    expected = (raw_test[:, col] - raw_train[:, col].mean()) / raw_train[:, col].std()
    assert np.allclose(b[:, col], expected)


def test_added_attributes_do_not_change_predictions():
    """The attribute weights start at zero: the pretrained network predicts exactly as before."""
    torch.manual_seed(0)
    net = ElemNet(TINY_ARCH)
    x = torch.as_tensor(fractions(50), dtype=torch.float32)
    before = net(x).detach()
    net.add_attributes(x.numpy())
    assert isinstance(net.attributes, AttributeInputs)
    assert torch.equal(net(x).detach(), before)
    assert not net.attributes.used()


def test_prepared_inputs_equal_on_the_fly_attributes():
    """Training feeds precomputed attributes (86 + 149 columns); prediction computes them from the fractions."""
    torch.manual_seed(0)
    net = ElemNet(TINY_ARCH)
    train = fractions(60)
    net.add_attributes(train)
    torch.nn.init.normal_(net.attributes.proj.weight, std=0.1)
    prepared = torch.as_tensor(net.prepare(train))
    assert prepared.shape == (60, 86 + attribute_count())
    x = torch.as_tensor(train, dtype=torch.float32)
    assert torch.allclose(net(prepared), net(x), atol=1e-6)
    assert torch.allclose(net.activations(prepared, ["fc2"])["fc2"], net.activations(x, ["fc2"])["fc2"], atol=1e-6)


def test_parse_strategies_with_attributes():
    assert parse_strategy("full+pa") == Strategy("full", attributes=True)
    assert str(parse_strategy("freeze:2+pa", 4)) == "freeze:2+pa"
    assert str(parse_strategy("gradual+pa")) == "gradual+pa"
    for bad in ("auto+pa", "full+pa+pa", "+pa"):
        with pytest.raises(ValueError):
            parse_strategy(bad)


@pytest.mark.parametrize("name", ["full", "full+pa", "freeze:2+pa", "gradual+pa"])
def test_attribute_weights_train_only_with_pa(name):
    net = ElemNet(TINY_ARCH)
    net.add_attributes(fractions(40))
    strategy = parse_strategy(name, len(net.layer_names))
    for phase in strategy_phases(strategy, net, QUICK):
        groups = phase.param_groups(net)
        optimized = {id(p) for g in groups for p in g["params"]}
        assert (id(net.attributes.proj.weight) in optimized) == strategy.attributes, phase.name
        assert net.attributes.proj.weight.requires_grad == strategy.attributes


def test_full_pa_run_saves_and_reloads_attribute_model(tmp_path, source_dir, data):
    run = finetune(data / "train.csv", tmp_path / "run", source=source_dir, strategy="full+pa",
                   test=data / "test.csv")
    card = json.loads((run.run_dir / "card.json").read_text())
    assert card["strategy"]["name"] == "full+pa"
    loaded = load_model(run.run_dir)
    assert loaded.info.inputs == FRACTIONS_AND_ATTRIBUTES
    assert loaded.model.attributes is not None and loaded.model.attributes.used()
    # the saved statistics are the training rows' (not recomputed on what is predicted)
    assert torch.equal(loaded.model.attributes.mean, run.model.attributes.mean)
    test = parse_formulas(pd.read_csv(data / "test.csv")["formula"]).fractions
    written = pd.read_csv(run.run_dir / "test_predictions.csv")["prediction"].to_numpy()
    assert np.allclose(predict_fractions(run.run_dir, test, "cpu"), written, rtol=1e-5, atol=1e-6)
    # `elemtl predict` needs only formulas: the model computes its attributes itself
    pd.DataFrame({"formula": ["NaCl", "Fe2O3", "Xx2"]}).to_csv(tmp_path / "new.csv", index=False)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "new.csv"), "--model", str(run.run_dir),
                                      "-o", str(tmp_path / "pred.csv"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "pred.csv")
    expected = predict_fractions(run.run_dir, parse_formulas(["NaCl", "Fe2O3"]).fractions, "cpu")
    np.testing.assert_allclose(frame["prediction"][:2], expected, rtol=1e-5)
    assert np.isnan(frame["prediction"][2])  # unparseable: listed as rejected, not predicted


def test_unused_attribute_input_is_dropped(tmp_path, source_dir, data):
    """A strategy without +pa leaves the attribute weights at zero: the saved model reads fractions only."""
    run = finetune(data / "train.csv", tmp_path / "run", source=source_dir, strategy="full")
    assert load_model(run.run_dir).info.inputs == FRACTIONS
    net = ElemNet(TINY_ARCH)
    net.add_attributes(fractions(30))
    net.drop_unused_attributes()
    assert net.attributes is None


def test_ensemble_with_attributes(tmp_path, source_dir, data):
    run = finetune_any(data / "train.csv", tmp_path / "run", source=source_dir, strategy="full+pa", members=2,
                       config=QUICK, show_progress=False, test=data / "test.csv")
    loaded = load_model(run.run_dir)
    assert isinstance(loaded.model, ElemNetEnsemble) and loaded.info.inputs == FRACTIONS_AND_ATTRIBUTES
    assert all(m.attributes is not None for m in loaded.model.members)
    written = pd.read_csv(run.run_dir / "test_predictions.csv")["prediction"].to_numpy()
    test = parse_formulas(pd.read_csv(data / "test.csv")["formula"]).fractions
    assert np.allclose(predict_fractions(run.run_dir, test, "cpu"), written, rtol=1e-5, atol=1e-6)


def test_auto_reason_explains_pa():
    from types import SimpleNamespace

    from elemnet_tl.finetune import explain_choice

    tried = {"full": (SimpleNamespace(best_val_mae=0.5),), "full+pa": (SimpleNamespace(best_val_mae=0.4),)}
    reason = explain_choice(tried, "full+pa", 1000, 0.1, "eV")
    assert reason.startswith("full+pa: lowest validation MAE (eV) among full+pa 0.4, full 0.5")
    assert "physical attributes" in reason
    assert "physical attributes" not in explain_choice(tried, "full", 1000, 0.1, "eV")


def test_pretrain_with_attributes_is_a_source_for_every_command(tmp_path, data):
    """``pretrain --pa`` trains the attribute input with the network; fine-tunes keep it (frozen unless +pa),
    ``reinit`` starts it at zero again, and feature extraction reads it."""
    result = CliRunner().invoke(app, ["pretrain", str(data / "train.csv"), "-o", str(tmp_path / "src"), "--pa",
                                      "--arch", TINY_ARCH, "--epochs", "3", "--batch-size", "32", "--quiet"])
    assert result.exit_code == 0, result.output
    source = load_model(tmp_path / "src")
    assert source.info.inputs == FRACTIONS_AND_ATTRIBUTES and source.model.attributes.used()
    card = json.loads((tmp_path / "src" / "card.json").read_text())
    assert card["model"]["inputs"] == FRACTIONS_AND_ATTRIBUTES

    full = finetune(data / "train.csv", tmp_path / "full", source=tmp_path / "src", strategy="full")
    assert torch.equal(full.model.attributes.proj.weight, source.model.attributes.proj.weight)
    assert not torch.equal(full.model.layers["fc1"].weight, source.model.layers["fc1"].weight)
    reinit = finetune(data / "train.csv", tmp_path / "reinit", source=tmp_path / "src", strategy="reinit")
    assert load_model(reinit.run_dir).info.inputs == FRACTIONS  # scratch: the attribute input unused

    from elemnet_tl.features import PretrainedFeatures

    x = fractions(20, seed=5)
    feats = PretrainedFeatures(source=str(tmp_path / "src"), layers="fc2", device="cpu").fit(x)
    assert feats.transform(x).shape == (20, source.model.widths[1])


def test_reinit_with_attributes_starts_them_as_a_fresh_first_layer():
    """``reinit+pa`` gives the attribute input He weights (a fresh network reading attributes; a zero start
    stalls it), plain ``reinit`` leaves it at zero and frozen, and a pretrained start keeps it at zero."""
    config = replace(QUICK, epochs=1, batch_size=32, lr=3e-4)
    for name, expect_used in (("reinit+pa", True), ("reinit", False), ("full+pa", False)):
        model = ElemNet(TINY_ARCH)
        model.add_attributes(fractions())
        strategy_phases(parse_strategy(name), model, config)
        weight = model.attributes.proj.weight.detach()
        assert model.attributes.used() == expect_used, name
        if expect_used:  # He normal: std sqrt(2 / fan_in)
            assert float(weight.std()) == pytest.approx((2 / attribute_count()) ** 0.5, rel=0.15)


NON_MAGNETIC = ["TiO2", "ScN", "TiC", "Sc2O3", "NaCl", "MgO", "TiN", "ScP", "CaO", "KBr", "TiS2", "ScAs"]
"""Compounds whose Magpie ground-state moments are 0 or ~1e-5 (Ti, Sc): ``mean_GSmagmom`` hardly varies."""


def test_attributes_are_kept_near_their_training_range():
    """A Fe compound after training on Ti/Sc compounds: its moment's z-score was ~1e5 (a from-scratch network
    then predicted -44,571 eV for a band gap); now within the training range widened by that range."""
    from elemnet_tl.attributes import bounds, scale, standardizer
    from elemnet_tl.physical import feature_labels

    train, test = parse_formulas(NON_MAGNETIC).fractions, parse_formulas(["Fe2O3", "NaCl"]).fractions
    a, b = standardized_attributes(train, test)
    lo, hi = bounds(a)
    assert np.all(b >= lo - (hi - lo) - 1e-12) and np.all(b <= hi + (hi - lo) + 1e-12)
    col = feature_labels().index("pa_MagpieData_mean_GSmagmom")
    raw = scale(physical_attributes(test), *standardizer(physical_attributes(train)))
    assert raw[0, col] > 1e4 and b[0, col] == pytest.approx(2 * hi[col] - lo[col])  # unbounded: huge
    np.testing.assert_array_equal(b[1], a[NON_MAGNETIC.index("NaCl")])  # a training composition: as before
    inputs = AttributeInputs(8).fit(train)
    np.testing.assert_allclose(inputs.standardized(test), b.astype(np.float32))


def test_a_model_saved_without_attribute_bounds_loads_unbounded(tmp_path):
    """Weights saved before the bounds were kept (the bundled models) load and predict as they were trained."""
    from safetensors.torch import load_file, save_file

    from elemnet_tl.attributes import UNBOUNDED

    train = parse_formulas(NON_MAGNETIC).fractions
    model = ElemNet(TINY_ARCH)
    model.add_attributes(train)
    assert torch.all(model.attributes.hi < UNBOUNDED)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("attributes.lo", "attributes.hi"))}
    fresh = ElemNet(TINY_ARCH, attributes=True)
    fresh.load_state_dict(state)
    assert torch.all(fresh.attributes.lo == -UNBOUNDED) and torch.all(fresh.attributes.hi == UNBOUNDED)
    fe = parse_formulas(["Fe2O3"]).fractions
    from elemnet_tl.attributes import scale, standardizer

    unbounded = scale(physical_attributes(fe), *standardizer(physical_attributes(train))).astype(np.float32)
    np.testing.assert_array_equal(fresh.attributes.standardized(fe), unbounded)  # as the old model computed it
    assert np.abs(unbounded).max() > 1e4
    # a saved run directory whose weights lack the bounds (written by an earlier version)
    run = tmp_path / "run"
    from elemnet_tl.pretrain import pretrain
    from elemnet_tl.training import FitConfig

    frame = pd.DataFrame({"formula": NON_MAGNETIC * 3, "target": np.arange(36.0)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    pretrain(tmp_path / "t.csv", run, arch=TINY_ARCH, attributes=True, duplicates="mean",
             config=FitConfig(epochs=2, batch_size=8), show_progress=False)
    weights = run / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as fh:
        meta = fh.metadata()
    kept = {k: v for k, v in load_file(str(weights)).items() if not k.endswith(("attributes.lo", "attributes.hi"))}
    bounded = predict_fractions(run, fe, "cpu")
    save_file(kept, str(weights), metadata=meta)
    card = json.loads((run / "card.json").read_text())
    del card["model"]["sha256"]  # nor did its card record the weights' sha256
    (run / "card.json").write_text(json.dumps(card))
    loaded = load_model(run)
    assert torch.all(loaded.model.attributes.hi == UNBOUNDED)
    assert not np.allclose(predict_fractions(run, fe, "cpu"), bounded)  # unbounded again, as it was trained
