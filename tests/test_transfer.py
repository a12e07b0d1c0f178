"""Transfer strategies and fine-tuning: which layers train, at which rates, what ``auto`` decides and records."""

from __future__ import annotations

import functools
import importlib
import json
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_ARCH, binary_table, one_line_error, tiny_data
from typer.testing import CliRunner

from elemnet_tl.checkpoint import load_model
from elemnet_tl.cli import app
from elemnet_tl.compositions import parse_formulas
from elemnet_tl.errors import InputError
from elemnet_tl.finetune import FAR_LR, FINETUNE_DEFAULTS, NEAR_LR, STEP_BUDGET, auto_candidates, sized_config
from elemnet_tl.finetune import finetune as finetune_any
from elemnet_tl.training import FitConfig, fit
from elemnet_tl.transfer import (
    HEAD_LR_SCALE,
    LR_MULT,
    Strategy,
    discriminative_groups,
    parse_strategy,
    strategy_phases,
)
from elemnet_tl.workflow import greedy_soup, load_training_inputs

# Patch the modules themselves (``elemnet_tl.finetune`` may also name the re-exported function).
finetune_module = importlib.import_module("elemnet_tl.finetune")
# these tests look inside one network; test_ensemble_* cover the default ensemble
finetune = functools.partial(finetune_any, members=1)
training_module = importlib.import_module("elemnet_tl.training")

ARCH = TINY_ARCH
"""Layers fc1, fc2 (group g1), fc3 (group g2) and out (group head); the ``source_dir`` fixture's."""
LAYERS = ["fc1", "fc2", "fc3", "out"]
QUICK = replace(FINETUNE_DEFAULTS, epochs=4)
runner = CliRunner()


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, source_dir):
    """Fine-tuning tables: a smooth target, its test file, the source's own predictions, and noise."""
    folder = tmp_path_factory.mktemp("data")
    table = binary_table(300, seed=2).drop_duplicates("formula")
    table.to_csv(folder / "smooth.csv", index=False)
    binary_table(60, seed=3).to_csv(folder / "smooth_test.csv", index=False)
    same = binary_table(300, seed=5).drop_duplicates("formula")
    source = load_model(source_dir)
    x = torch.as_tensor(parse_formulas(same["formula"]).fractions, dtype=torch.float32)
    same["target"] = source.predict(x).numpy().astype(np.float64)
    same.to_csv(folder / "same_property.csv", index=False)
    noise = same.copy()
    noise["target"] = np.random.default_rng(0).normal(size=len(noise))
    noise.to_csv(folder / "unrelated.csv", index=False)
    return folder


def source_model(source_dir):
    return load_model(source_dir).model


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def layer_equal(a: dict, b: dict, layer: str) -> bool:
    return all(torch.equal(a[f"layers.{layer}.{p}"], b[f"layers.{layer}.{p}"]) for p in ("weight", "bias"))


def layer_differs(a: dict, b: dict, layer: str) -> bool:
    """The weight matrix moved (biases may legitimately stay put for dead units)."""
    return not torch.equal(a[f"layers.{layer}.weight"], b[f"layers.{layer}.weight"])


def trainable_layers(model) -> set[str]:
    found = set()
    for name, layer in model.layers.items():
        flags = {p.requires_grad for p in layer.parameters()}
        assert len(flags) == 1, f"{name}: weight and bias disagree on requires_grad"
        if flags.pop():
            found.add(name)
    return found


@pytest.fixture
def optimizers(monkeypatch):
    """Every optimizer :func:`fit` builds, in order."""
    made = []
    real = training_module.make_optimizer

    def spy(groups, config, **kwargs):
        opt = real(groups, config, **kwargs)
        made.append(opt)
        return opt

    monkeypatch.setattr(training_module, "make_optimizer", spy)
    return made


def run_phase(model, phase, data):
    groups = phase.param_groups(model)
    result = fit(model, *data, phase.config, param_groups=groups)
    return groups, result


# ---------------------------------------------------------------- parse_strategy

@pytest.mark.parametrize("name", ["auto", "full", "head", "reinit", "gradual"])
def test_parse_strategy_names(name):
    strategy = parse_strategy(name)
    assert strategy == Strategy(name) and str(strategy) == name
    assert parse_strategy(f"  {name.upper()} ") == strategy


@pytest.mark.parametrize("k", [1, 2, 16])
def test_parse_freeze_k(k):
    strategy = parse_strategy(f"freeze:{k}")
    assert strategy == Strategy("freeze", k)
    assert str(strategy) == f"freeze:{k}"
    assert parse_strategy(str(strategy)) == strategy


@pytest.mark.parametrize("text,n_layers", [("freeze:0", 17), ("freeze:17", 17), ("freeze:4", 4), ("freeze:99", 17)])
def test_parse_freeze_k_out_of_range(text, n_layers):
    with pytest.raises(ValueError, match=rf"between 1 and {n_layers - 1}"):
        parse_strategy(text, n_layers)


def test_spelling_only_check_leaves_k_to_the_model():
    """finetune checks the spelling before it has a model: no upper bound for K yet, K = 0 refused."""
    assert parse_strategy("freeze:99", None) == parse_strategy("freeze:99", 100)
    with pytest.raises(ValueError, match="at least 1"):
        parse_strategy("freeze:0", None)


@pytest.mark.parametrize("text", ["", "bogus", "freeze", "freeze:", "freeze:-1", "freeze:x", "freeze:2.5",
                                  "freeze: 2", "head2", "fulll", "freeze:2:3"])
def test_parse_strategy_junk(text):
    with pytest.raises(ValueError, match="strategy"):
        parse_strategy(text)


# ---------------------------------------------------------------- phases: which layers train

EXPECTED_TRAINABLE = {
    "full": set(LAYERS),
    "reinit": set(LAYERS),
    "freeze:1": {"fc2", "fc3", "out"},
    "freeze:2": {"fc3", "out"},
    "freeze:3": {"out"},
    "head": {"out"},
}


@pytest.mark.parametrize("name", list(EXPECTED_TRAINABLE))
def test_single_phase_strategy_trains_exactly_its_layers(source_dir, optimizers, name):
    model = source_model(source_dir)
    pretrained = weights(model)
    config = FitConfig(epochs=3, batch_size=32, lr=1e-3, patience=2)
    phases = strategy_phases(parse_strategy(name, len(model.layer_names)), model, config)
    # fresh weights: at least 60 % of the budget, then 40 % of it as patience (a new network can sit at
    # the mean for a while)
    expected_config = replace(config, min_epochs=2, patience=2) if name == "reinit" else config
    assert len(phases) == 1 and phases[0].name == name and phases[0].config == expected_config
    start = weights(model)
    if name == "reinit":  # fresh weights before any training
        assert all(layer_differs(start, pretrained, layer) for layer in LAYERS)
    else:
        assert all(layer_equal(start, pretrained, layer) for layer in LAYERS)

    groups = phases[0].param_groups(model)
    expected = EXPECTED_TRAINABLE[name]
    assert trainable_layers(model) == expected
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters() if p.requires_grad}

    fit(model, *tiny_data(160, seed=4), phases[0].config, param_groups=groups)
    after = weights(model)
    for layer in LAYERS:
        if layer in expected:
            assert layer_differs(after, start, layer), f"{name}: {layer} should have trained"
        else:
            assert layer_equal(after, pretrained, layer), f"{name}: {layer} should be frozen"
    scale = HEAD_LR_SCALE if name == "head" else 1.0
    (optimizer,) = optimizers
    assert [g["base_lr"] for g in optimizer.param_groups] == [pytest.approx(config.lr * scale)]


def test_frozen_layers_stay_frozen_with_ema(source_dir):
    model = source_model(source_dir)
    pretrained = weights(model)
    config = FitConfig(epochs=3, batch_size=32, patience=0, ema_epochs=1.0)
    (phase,) = strategy_phases(Strategy("freeze", 2), model, config)
    run_phase(model, phase, tiny_data(160, seed=4))
    after = weights(model)
    assert layer_equal(after, pretrained, "fc1") and layer_equal(after, pretrained, "fc2")
    assert layer_differs(after, pretrained, "fc3") and layer_differs(after, pretrained, "out")


def test_gradual_head_then_all_with_discriminative_rates(source_dir, optimizers):
    model = source_model(source_dir)
    pretrained = weights(model)
    base = FitConfig(epochs=30, batch_size=32, lr=1e-3, patience=5)
    phases = strategy_phases(Strategy("gradual"), model, base)
    assert [p.name for p in phases] == ["gradual/head", "gradual/all"]
    head, everything = phases
    assert head.config.epochs == 3 and head.config.patience == 0  # max(2, 30 // 10)
    assert everything.config == base
    data = tiny_data(160, seed=4)

    groups, _ = run_phase(model, head, data)
    assert trainable_layers(model) == {"out"}
    after_head = weights(model)
    assert all(layer_equal(after_head, pretrained, layer) for layer in ("fc1", "fc2", "fc3"))
    assert layer_differs(after_head, pretrained, "out")

    groups, _ = run_phase(model, everything, data)
    assert trainable_layers(model) == set(LAYERS)
    # one optimizer group per layer group, in forward order, with every parameter exactly once
    expected_params = [[id(p) for name in names for p in model.layers[name].parameters()]
                       for names in model.groups.values()]
    assert [[id(p) for p in g["params"]] for g in groups] == expected_params
    scales = [g["lr_scale"] for g in groups]
    assert all(a < b for a, b in zip(scales, scales[1:])), scales
    assert scales[-1] == pytest.approx(1.0)
    assert scales[-1] / scales[0] == pytest.approx(LR_MULT)

    head_opt, all_opt = optimizers  # a fresh optimizer (fresh state) per phase
    assert [g["base_lr"] for g in head_opt.param_groups] == [pytest.approx(base.lr * HEAD_LR_SCALE)]
    base_lrs = [g["base_lr"] for g in all_opt.param_groups]
    assert base_lrs == pytest.approx([base.lr * s for s in scales])
    last_lrs = [g["lr"] for g in all_opt.param_groups]  # the schedule keeps the ratios
    assert last_lrs[-1] / last_lrs[0] == pytest.approx(LR_MULT)
    after_all = weights(model)
    assert all(layer_differs(after_all, after_head, layer) for layer in LAYERS)


def test_discriminative_groups_default_arch():
    from elemnet_tl.model import ElemNet

    model = ElemNet()
    groups = discriminative_groups()(model)
    scales = [g["lr_scale"] for g in groups]
    assert len(groups) == len(model.groups) == 7
    assert all(a < b for a, b in zip(scales, scales[1:]))
    assert scales[0] == pytest.approx(1 / LR_MULT) and scales[-1] == pytest.approx(1.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_strategy_phases_rejects_auto(source_dir):
    with pytest.raises(ValueError, match="auto"):
        strategy_phases(Strategy("auto"), source_model(source_dir), FitConfig())


def test_greedy_soup(source_dir):
    """Two ingredients whose average is the (better) original are souped; a bad one is left out."""
    model = source_model(source_dir)
    x_val = tiny_data(160, seed=4)[2]
    with torch.no_grad():
        y_val = model(x_val)  # the original weights are exact: MAE 0
    centre = weights(model)

    def shifted(delta: float) -> dict:
        state = {k: v.clone() for k, v in centre.items()}
        state["layers.out.bias"] += delta
        return state

    def val_mae(state: dict) -> float:
        model.load_state_dict(state)
        with torch.no_grad():
            return float((model(x_val) - y_val).abs().mean())

    ingredients = {name: (val_mae(state), state) for name, state in
                   (("up", shifted(0.5)), ("down", shifted(-0.6)), ("far", shifted(25.0)))}
    names, val, state = greedy_soup(model, ingredients, x_val, y_val, 1.0)
    assert names == ["up", "down"]
    assert val < min(v[0] for v in ingredients.values())
    assert val == pytest.approx(0.05, abs=1e-4)
    assert val == pytest.approx(val_mae(state), rel=1e-5)
    assert torch.allclose(state["layers.out.bias"], centre["layers.out.bias"] - 0.05)
    alone = {"up": ingredients["up"], "far": ingredients["far"]}
    names, val, state = greedy_soup(model, alone, x_val, y_val, 1.0)
    assert names == ["up"] and val == ingredients["up"][0]
    assert all(torch.equal(state[k], ingredients["up"][1][k]) for k in state)


# ---------------------------------------------------------------- sized_config

@pytest.mark.parametrize("n,batch,epochs", [
    (0, 32, 200), (20, 32, 200), (100, 32, 200), (1000, 32, 65), (4000, 128, 65), (10_000, 256, 51),
    (100_000, 256, 30),
])
def test_sized_config_rules(n, batch, epochs):
    config = sized_config(FINETUNE_DEFAULTS, n)
    assert (config.batch_size, config.epochs) == (batch, epochs)
    assert replace(config, batch_size=0, epochs=0) == FINETUNE_DEFAULTS  # nothing else changed


@pytest.mark.parametrize("n", [50, 333, 2_000, 7_777, 50_000, 1_000_000])
def test_sized_config_invariants(n):
    config = sized_config(FINETUNE_DEFAULTS, n)
    assert 32 <= config.batch_size <= 256 and config.batch_size & (config.batch_size - 1) == 0
    assert 30 <= config.epochs <= 200
    steps = max(1, n // config.batch_size)
    if 30 < config.epochs < 200:  # not clamped: about STEP_BUDGET optimizer steps
        assert abs(steps * config.epochs - STEP_BUDGET) <= steps / 2 + 1


def test_sized_config_keeps_given_values():
    assert sized_config(replace(FINETUNE_DEFAULTS, batch_size=64, epochs=7), 10_000) == replace(
        FINETUNE_DEFAULTS, batch_size=64, epochs=7)
    given_batch = sized_config(replace(FINETUNE_DEFAULTS, batch_size=64), 6400)  # 100 steps/epoch -> 20 -> 30
    assert (given_batch.batch_size, given_batch.epochs) == (64, 30)
    given_epochs = sized_config(replace(FINETUNE_DEFAULTS, epochs=5), 4000)
    assert (given_epochs.batch_size, given_epochs.epochs) == (128, 5)


def test_auto_candidates():
    groups = {"g1": ["fc1", "fc2", "fc3", "fc4"], "g2": ["fc5"], "head": ["out"]}
    assert auto_candidates(100, groups) == ["full", "full+pa", "freeze:4", "reinit", "reinit+pa", "head"]
    assert auto_candidates(999, groups) == ["full", "full+pa", "freeze:4", "reinit", "reinit+pa"]
    assert auto_candidates(1000, groups) == ["full", "full+pa"]
    assert auto_candidates(5000, groups) == ["full", "full+pa"]
    # --keep-head: no fresh-weight candidates, whose output layer could not be the kept one
    assert auto_candidates(100, groups, keep_head=True) == ["full", "full+pa", "freeze:4", "head"]


# ---------------------------------------------------------------- finetune(): the API

@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, source_dir, data_dir):
    out = tmp_path_factory.mktemp("auto") / "run"
    return finetune(data_dir / "smooth.csv", out, source=source_dir, test=data_dir / "smooth_test.csv",
                    config=QUICK, show_progress=False)


def assert_auto_choice(card: dict) -> None:
    """The recorded choice is the candidate with the lowest validation MAE, or a greedy weight soup led by it
    that validates better still; the one-line reason quotes every candidate's validation MAE."""
    strategy, tried = card["strategy"], card["candidates"]
    assert strategy["auto"] is True and list(tried) == strategy["candidates"]
    best = min(tried, key=lambda k: tried[k]["val_mae"])
    name = strategy["name"]
    if name.startswith("soup:"):
        members = name[len("soup:"):].split(",")
        assert len(members) >= 2 and members[0] == best and set(members) <= set(tried), name
        assert card["metrics"]["val_mae"] < tried[best]["val_mae"]
    else:
        assert name == best
        assert card["metrics"]["val_mae"] == pytest.approx(tried[best]["val_mae"])
    reason = strategy["reason"]
    assert "\n" not in reason and reason.startswith(f"{name}:"), reason
    for candidate, entry in tried.items():
        assert f"{candidate} {entry['val_mae']:.4g}" in reason
    r = card["source_correlation"]
    assert f"r = {r:.2f}" in reason if math.isfinite(r) else "r undefined" in reason


def test_soup_only_over_the_listed_candidates_and_never_worse_than_the_best(data_dir, tmp_path):
    """A candidate outside ``soup`` (fresh weights: ``reinit``) that validates best is kept as it is, even
    though a soup of the others is evaluated."""
    from elemnet_tl.model import ElemNet
    from elemnet_tl.transfer import Phase, layers_groups
    from elemnet_tl.workflow import run_training

    inputs = load_training_inputs(data_dir / "smooth.csv")
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    groups = layers_groups(model.layer_names)
    good = FitConfig(epochs=10, batch_size=16, lr=3e-3, patience=0)
    poor = FitConfig(epochs=1, batch_size=16, lr=1e-6, patience=0, warmup=0.0)
    plan = {name: (lambda m, c=config, n=name: [Phase(n, c, groups)])
            for name, config in (("good", good), ("poor1", poor), ("poor2", poor))}
    result = run_training(tmp_path / "run", model, inputs, plan, command="t", soup=["poor1", "poor2"],
                          show_progress=False)
    tried = result.card["candidates"]
    assert tried["good"]["val_mae"] < min(tried["poor1"]["val_mae"], tried["poor2"]["val_mae"])
    assert result.metrics["val_mae"] == pytest.approx(tried["good"]["val_mae"])
    assert validation_mae_of_saved_model(tmp_path / "run", data_dir / "smooth.csv") == pytest.approx(
        tried["good"]["val_mae"], rel=1e-4)


def test_a_chosen_soup_is_what_every_ensemble_member_repeats(data_dir, tmp_path, monkeypatch):
    """When the soup wins, the other members train each of its ingredients (not the best single one)."""
    from elemnet_tl import workflow
    from elemnet_tl.model import ElemNet
    from elemnet_tl.transfer import Phase, layers_groups

    def always_soup(model, ingredients, x_val, y_val, y_scale):  # make the soup win whatever the data
        return sorted(ingredients), -1.0, workflow.average_states([v[1] for v in ingredients.values()])

    monkeypatch.setattr(workflow, "greedy_soup", always_soup)
    inputs = load_training_inputs(data_dir / "smooth.csv")
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    groups = layers_groups(model.layer_names)
    plan = {name: (lambda m, c=FitConfig(epochs=2, batch_size=16, lr=lr, patience=0), n=name: [Phase(n, c, groups)])
            for name, lr in (("a", 1e-3), ("b", 3e-3))}
    result = workflow.run_training(tmp_path / "run", model, inputs, plan, command="t", soup=["a", "b"], members=2,
                                   show_progress=False)
    assert result.card["ensemble"]["strategy"] == "soup:a,b"
    assert sorted(p.name for p in (tmp_path / "run" / "members").iterdir()) == ["1_0", "1_1"]


def validation_mae_of_saved_model(run_dir, data, seed: int = 0) -> float:
    """Recompute the validation MAE of the weights written to ``run_dir`` (same seeded hold-out)."""
    _, _, x_val, y_val = load_training_inputs(data, seed=seed).arrays()
    pred = load_model(run_dir).predict(torch.as_tensor(x_val, dtype=torch.float32)).numpy().astype(np.float64)
    return float(np.abs(pred - y_val).mean())


def test_auto_records_choice_and_reason(auto_run):
    card = json.loads((auto_run.run_dir / "card.json").read_text())
    assert card == json.loads(json.dumps(auto_run.card, default=str))
    n_train = card["split"]["n_train"]
    strategy = card["strategy"]
    assert strategy["candidates"] == auto_candidates(n_train, {"g1": ["fc1", "fc2"], "g2": ["fc3"], "head": ["out"]})
    assert strategy["candidates"] == ["full", "full+pa", "freeze:2", "reinit", "reinit+pa", "head"]  # < 300: head too
    assert_auto_choice(card)
    assert f"{n_train} training rows" in strategy["reason"]
    rate = card["learning_rate"]  # describes the chosen candidate's start
    if strategy["name"].startswith("reinit"):
        assert rate["reason"] == "fresh weights" and card["training"]["lr"] == NEAR_LR
        assert rate["near_source"] is None  # how near the source is does not apply to fresh weights
    else:
        assert "ridge probe" in rate["reason"]
        assert card["training"]["lr"] == (NEAR_LR if rate["near_source"] else FAR_LR)
    assert math.isfinite(card["source_correlation"])
    assert card["source_model"]["path"].endswith("model.safetensors")


def test_auto_saved_model_is_the_chosen_one(auto_run, data_dir):
    """The weights written to the run directory reproduce the validation MAE on the card (and its test scores)."""
    card = auto_run.card
    assert validation_mae_of_saved_model(auto_run.run_dir, data_dir / "smooth.csv") == pytest.approx(
        card["metrics"]["val_mae"], rel=1e-4), card["strategy"]["name"]
    test = parse_formulas(pd.read_csv(data_dir / "smooth_test.csv")["formula"]).fractions
    pred = load_model(auto_run.run_dir).predict(torch.as_tensor(test, dtype=torch.float32)).numpy()
    written = pd.read_csv(auto_run.run_dir / "test_predictions.csv")["prediction"].to_numpy()
    assert np.allclose(pred, written, rtol=1e-5, atol=1e-6)


def test_auto_run_directory(auto_run):
    run = auto_run.run_dir
    for name in ("model.safetensors", "card.json", "learning_curve.png", "test_predictions.csv"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "candidates").iterdir()) == ["freeze_2", "full", "full+pa", "head",
                                                                      "reinit", "reinit+pa"]
    soup = auto_run.card["strategy"]["name"].split("soup:")[-1].split(",")[1:]
    assert not any(name.startswith("reinit") for name in soup)
    loaded = load_model(run)
    assert loaded.info.arch == ARCH


def test_auto_run_has_metrics_csv(auto_run):
    """The chosen candidate's per-epoch metrics belong in the run directory, as for any other run."""
    metrics = auto_run.run_dir / "metrics.csv"
    assert metrics.is_file(), "metrics.csv is only written under candidates/<name>/, not in the run directory"
    assert len(pd.read_csv(metrics)) == auto_run.card["training"]["epochs_run"]


def test_auto_run_test_metrics(auto_run, data_dir):
    m = auto_run.metrics
    assert all(math.isfinite(m[k]) for k in ("val_mae", "test_mae", "test_rmse", "test_r2"))
    pred = pd.read_csv(auto_run.run_dir / "test_predictions.csv")
    test = pd.read_csv(data_dir / "smooth_test.csv")
    assert len(pred) == len(test)  # every test row scored, duplicates included
    assert (pred["prediction"] - pred["target"]).abs().mean() == pytest.approx(m["test_mae"], rel=1e-6)


def test_no_test_file_no_test_metrics(tmp_path, source_dir, data_dir):
    result = finetune(data_dir / "smooth.csv", tmp_path / "run", source=source_dir, strategy="head",
                      config=replace(QUICK, epochs=2), show_progress=False)
    assert result.metrics["test_mae"] is None and result.card["split"]["n_test"] == 0
    assert not (tmp_path / "run" / "test_predictions.csv").exists()


@pytest.mark.parametrize("name,frozen,trained", [
    ("freeze:2", ["fc1", "fc2"], ["fc3", "out"]),
    ("head", ["fc1", "fc2", "fc3"], ["out"]),
    ("gradual", [], ["out"]),  # the hidden layers move only if the second phase validates best
    ("full", [], LAYERS),
    ("reinit", [], LAYERS),
])
def test_finetune_fixed_strategy(tmp_path, source_dir, data_dir, name, frozen, trained):
    result = finetune(data_dir / "smooth.csv", tmp_path / "run", source=source_dir, strategy=name, config=QUICK,
                      show_progress=False)
    card = result.card
    assert card["strategy"] == {"name": name, "reason": "chosen by the user", "auto": False}
    assert "candidates" not in card and not (tmp_path / "run" / "candidates").exists()
    source = weights(source_model(source_dir))
    saved = weights(load_model(tmp_path / "run").model)
    for layer in frozen:
        assert layer_equal(saved, source, layer), f"{name}: {layer} changed"
    for layer in trained:
        assert layer_differs(saved, source, layer), f"{name}: {layer} did not train"
    phases = card["training"]["phases"]
    assert [p["phase"] for p in phases] == (["gradual/head", "gradual/all"] if name == "gradual" else [name])
    assert card["training"]["epochs_run"] == sum(p["epochs_run"] for p in phases)
    assert validation_mae_of_saved_model(tmp_path / "run", data_dir / "smooth.csv") == pytest.approx(
        card["metrics"]["val_mae"], rel=1e-4)


def test_multi_phase_metrics_csv_covers_every_phase(tmp_path, source_dir, data_dir):
    """gradual: metrics.csv must hold both phases, like the learning curve and ``epochs_run``."""
    result = finetune(data_dir / "smooth.csv", tmp_path / "run", source=source_dir, strategy="gradual",
                      config=QUICK, show_progress=False)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    epochs_run = result.card["training"]["epochs_run"]
    assert epochs_run == 2 + QUICK.epochs
    assert metrics["epoch"].tolist() == list(range(1, epochs_run + 1))


class _Stop(Exception):
    pass


@pytest.mark.parametrize("keep_head", [True, False])
def test_keep_head_start(monkeypatch, tmp_path, source_dir, data_dir, keep_head):
    """Hidden layers always start from the source; the output layer only with ``keep_head``."""
    seen = {}

    def spy(run_dir, model, inputs, plan, **kwargs):
        seen["weights"] = weights(model)
        seen["x"] = torch.as_tensor(inputs.arrays()[0])
        seen["pred"] = model(seen["x"]).detach()
        raise _Stop

    monkeypatch.setattr(finetune_module, "run_training", spy)
    with pytest.raises(_Stop):
        finetune(data_dir / "smooth.csv", tmp_path / "run", source=source_dir, strategy="full",
                 keep_head=keep_head, config=QUICK, show_progress=False)
    source = source_model(source_dir)
    start = seen["weights"]
    assert all(layer_equal(start, weights(source), layer) for layer in ("fc1", "fc2", "fc3"))
    # with keep_head the start predicts the source's values (up to a change of target scaler)
    with torch.no_grad():
        r = np.corrcoef(seen["pred"].numpy(), source(seen["x"]).numpy())[0, 1]
    if keep_head:
        assert r > 0.9999
    else:
        assert layer_differs(start, weights(source), "out")
        assert r < 0.99


def test_keep_head_same_property_starts_near_zero_error(tmp_path, source_dir, data_dir):
    """Fine-tuning on the source's own predictions with its head kept: almost no error from the first epoch.

    The kept head outputs the *source's* standardized scale; the fine-tuning run re-standardizes the target
    with the new data's mean and std, so the head must be rescaled to it (else the start is far off).
    """
    result = finetune(data_dir / "same_property.csv", tmp_path / "run", source=source_dir, strategy="head",
                      keep_head=True, config=replace(QUICK, epochs=2), show_progress=False)
    std = result.card["target"]["std"]
    assert result.metrics["val_mae"] < 0.1 * std, (result.metrics["val_mae"], std)


@pytest.fixture(scope="module")
def decisions(tmp_path_factory, source_dir, data_dir):
    out = tmp_path_factory.mktemp("decisions")
    return {name: finetune(data_dir / f"{name}.csv", out / name, source=source_dir, config=QUICK,
                           show_progress=False).card
            for name in ("same_property", "unrelated")}


def test_auto_decision_same_vs_unrelated_property(decisions):
    same, unrelated = decisions["same_property"], decisions["unrelated"]
    assert same["source_correlation"] > 0.999
    assert "r = 1.00" in same["strategy"]["reason"]
    assert abs(unrelated["source_correlation"]) < 0.3
    assert f"r = {unrelated['source_correlation']:.2f}" in unrelated["strategy"]["reason"]
    for card in (same, unrelated):
        assert_auto_choice(card)
    # noise cannot be learned: every candidate stays near the MAE of predicting the mean
    assert unrelated["metrics"]["val_mae"] / unrelated["target"]["std"] > 0.6


def test_finetune_bad_source_and_strategy(tmp_path, source_dir, data_dir):
    with pytest.raises(InputError, match="no model here"):
        finetune(data_dir / "smooth.csv", tmp_path / "run", source=tmp_path / "missing", show_progress=False)
    with pytest.raises(ValueError, match="strategy"):
        finetune(data_dir / "smooth.csv", tmp_path / "run", source=source_dir, strategy="freeze:4",
                 show_progress=False)  # the tiny model has 4 weight layers: K <= 3
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the CLI

def test_cli_finetune_test_fraction(tmp_path, source_dir, data_dir):
    """--test-fraction (as pretrain has): a seeded hold-out of the merged rows, scored once, never trained on."""
    out = tmp_path / "run"
    result = runner.invoke(app, ["finetune", str(data_dir / "smooth.csv"), "-o", str(out), "--from",
                                 str(source_dir), "--epochs", "2", "--strategy", "full", "--ensemble", "2",
                                 "--test-fraction", "0.25", "-q"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    tested = pd.read_csv(out / "test_predictions.csv")
    kept = card["data"]["train"]["kept"]
    assert card["split"]["n_test"] == len(tested) == round(0.25 * kept)
    assert card["data"]["train"]["kept_for_training"] == kept - len(tested)
    assert card["metrics"]["test_mae"] == pytest.approx((tested["prediction"] - tested["target"]).abs().mean())
    assert "seeded 0.25 hold-out" in card["metrics_note"] and "test MAE" in result.output
    assert card["split"]["n_train"] + card["split"]["n_val"] == kept - len(tested)  # the rest train and validate
    twice = tmp_path / "twice.csv"  # every row twice, kept twice: the hold-out's twins stay in training
    pd.concat([pd.read_csv(data_dir / "smooth.csv")] * 2).to_csv(twice, index=False)
    kept = runner.invoke(app, ["finetune", str(twice), "-o", str(tmp_path / "keep"), "--from", str(source_dir),
                               "--epochs", "1", "--strategy", "full", "--ensemble", "1", "--test-fraction", "0.25",
                               "--duplicates", "keep", "-q"])
    assert kept.exit_code == 0, kept.output
    card = json.loads((tmp_path / "keep" / "card.json").read_text())
    seen = card["data"]["test"]["rows_in_training_data"]
    assert seen > 0 and f"{seen} of them are compositions of the training data" in card["metrics_note"]
    assert "also in the training data" in " ".join(kept.output.split())
    both = runner.invoke(app, ["finetune", str(data_dir / "smooth.csv"), "-o", str(tmp_path / "x"), "--from",
                               str(source_dir), "--test", str(data_dir / "smooth.csv"), "--test-fraction", "0.2"])
    assert both.exit_code == 2 and "either --test or --test-fraction" in both.output



def test_cli_finetune(tmp_path, source_dir, data_dir):
    out = tmp_path / "run"
    result = runner.invoke(app, ["finetune", str(data_dir / "smooth.csv"), "-o", str(out), "--from",
                                 str(source_dir), "--epochs", "3", "-q"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    strategy_lines = [line for line in lines if line.startswith("strategy ")]
    assert len(strategy_lines) == 1, result.output
    card = json.loads((out / "card.json").read_text())
    assert re.match(rf"strategy {re.escape(card['strategy']['name'])} — .*validat", strategy_lines[0])
    assert_auto_choice(card)
    assert card["training"]["epochs"] == 3
    head_lines = [line for line in lines if line.startswith("output layer ")]
    assert head_lines == [f"output layer {card['head']['reason']}; peak learning rate {card['training']['lr']:g} "
                          f"({card['learning_rate']['reason']})"]
    assert any(line.startswith("best validation MAE") for line in lines)
    assert lines[-1] == f"run directory: {out}"
    baseline = card["split"]["val_mae_of_training_mean"]
    assert card["metrics"]["val_mae"] < baseline and "no better than predicting" not in result.output
    wild = runner.invoke(app, ["finetune", str(data_dir / "smooth.csv"), "-o", str(tmp_path / "wild"), "--from",
                               str(source_dir), "--epochs", "3", "--lr", "1e3", "--strategy", "full", "-q"])
    assert wild.exit_code == 0, wild.output  # a finite but useless run: said so, not hidden
    assert "no better than predicting the training mean" in " ".join(wild.output.split())


def test_cli_finetune_bad_strategy(tmp_path, source_dir, data_dir):
    out = tmp_path / "run"
    one_line_error(["finetune", str(data_dir / "smooth.csv"), "-o", str(out), "--from", str(source_dir),
                    "--strategy", "bogus", "-q"], "--strategy", "bogus")
    one_line_error(["finetune", str(data_dir / "smooth.csv"), "-o", str(out), "--from", str(source_dir),
                    "--strategy", "freeze:9", "-q"], "freeze:9", "between 1 and 3")
    assert not out.exists()


def test_cli_finetune_missing_source(tmp_path, data_dir):
    out = tmp_path / "run"
    missing = tmp_path / "no_such_run"
    one_line_error(["finetune", str(data_dir / "smooth.csv"), "-o", str(out), "--from", str(missing), "-q"],
                   missing)
    assert not out.exists()


def test_ensemble_averages_members_each_with_its_own_split(tmp_path, source_dir, data_dir):
    from elemnet_tl.checkpoint import load_model
    from elemnet_tl.model import ElemNetEnsemble

    result = finetune_any(data_dir / "smooth.csv", tmp_path / "run", source=source_dir, strategy="full",
                          members=3, config=QUICK, test=data_dir / "smooth_test.csv", show_progress=False)
    loaded = load_model(tmp_path / "run")
    assert isinstance(loaded.model, ElemNetEnsemble) and len(loaded.model.members) == 3
    assert loaded.info.members == 3
    ens = result.card["ensemble"]
    assert ens["members"] == 3 and len(ens["other_members_val_mae"]) == 2
    assert (tmp_path / "run" / "members" / "1" / "metrics.csv").is_file()
    x = torch.rand(7, 86)
    x = x / x.sum(1, keepdim=True)
    with torch.no_grad():
        each = torch.stack([m(x) for m in loaded.model.members])
        assert torch.allclose(loaded.model(x), each.mean(0))
        assert not torch.allclose(each[0], each[1])  # trained on different splits
    # an ensemble run can be the source of another fine-tune (its first member is used)
    again = finetune(data_dir / "smooth.csv", tmp_path / "again", source=tmp_path / "run", strategy="head",
                     config=QUICK, show_progress=False)
    assert again.card["metrics"]["val_mae"] > 0
    said = CliRunner().invoke(app, ["finetune", str(data_dir / "smooth.csv"), "-o", str(tmp_path / "cli"), "--from",
                                    str(tmp_path / "run"), "--strategy", "head", "--epochs", "2", "--ensemble", "2",
                                    "-q"])
    out = " ".join(said.output.split())
    assert said.exit_code == 0 and "an ensemble of 3 networks; fine-tuning starts from its first" in out
    assert "(first of 2 networks; the other " in out  # each member's validation MAE, not the first's alone


def test_pretrain_patience_grows_with_a_long_schedule(tmp_path):
    """A long cosine schedule keeps the rate high for long: the default patience is a quarter of it."""
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS, default_patience

    assert default_patience(PRETRAIN_DEFAULTS.epochs) == PRETRAIN_DEFAULTS.patience  # the bundled recipe's
    assert default_patience(400) == 100
    binary_table(40, seed=3).to_csv(tmp_path / "d.csv", index=False)
    args = ["pretrain", str(tmp_path / "d.csv"), "-o", str(tmp_path / "r"), "--arch", "8x1", "--epochs", "200",
            "--batch-size", "8", "--quiet"]
    result = CliRunner().invoke(app, args + ["--lr", "1e-9"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert card["training"]["patience"] == 50
    assert card["training"]["stopped_early"]
    assert card["training"]["epochs_run"] == card["training"]["best_epoch"] + 50  # stopped by that patience
    result = CliRunner().invoke(app, args + ["--patience", "5", "--overwrite"])
    assert json.loads((tmp_path / "r" / "card.json").read_text())["training"]["patience"] == 5


def test_pretrain_init_continues_from_a_model(source_dir, tmp_path):
    """``pretrain --init`` starts from the given weights (head rescaled to the new target) and records it."""
    frame = binary_table(120, seed=7)
    frame["target"] = frame["target"] * 3.0 + 1.0  # same property on another scale and reference
    frame.to_csv(tmp_path / "second.csv", index=False)
    source = load_model(source_dir)
    result = CliRunner().invoke(app, ["pretrain", str(tmp_path / "second.csv"), "-o", str(tmp_path / "cont"),
                                      "--init", str(source_dir), "--epochs", "1", "--weight-decay", "0.02",
                                      "--ema", "0.5", "--quiet"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "cont" / "card.json").read_text())
    assert card["init_model"]["path"].endswith("model.safetensors")
    assert card["training"]["weight_decay"] == 0.02
    assert card["training"]["ema_epochs"] == 0.5
    assert card["training"]["patience"] == 30  # the recipe's, for a short schedule
    continued = load_model(tmp_path / "cont")
    assert continued.info.arch == source.info.arch
    for extra in (["--arch", "64x2"], ["--dropout", "0.3"]):  # were ignored without a word
        refused = CliRunner().invoke(app, ["pretrain", str(tmp_path / "second.csv"), "-o", str(tmp_path / "x"),
                                           "--init", str(source_dir), *extra])
        assert refused.exit_code == 2 and "leave out --arch and --dropout" in refused.output
    assert continued.info.target_std != pytest.approx(source.info.target_std, rel=0.1)

    # before any step: the body is the source's, and the rescaled head predicts exactly what the source did
    from elemnet_tl.pretrain import _initial_model
    from elemnet_tl.training import predict_tensor, standardize

    y = frame["target"].to_numpy()
    start, _ = _initial_model(source_dir, y)
    mean, std = standardize(y)
    x = torch.as_tensor(parse_formulas(frame["formula"]).fractions, dtype=torch.float32)
    torch.testing.assert_close(predict_tensor(start, x) * std + mean,
                               predict_tensor(source.model, x) * source.info.target_std + source.info.target_mean,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("keep_head", "r", "kept"), [(None, 0.97, True), (None, -0.97, True), (None, 0.6, False),
                                                      (None, float("nan"), False), (True, 0.1, True),
                                                      (False, 0.99, False)])
def test_decide_head(keep_head, r, kept):
    from elemnet_tl.finetune import decide_head

    decision, reason = decide_head(keep_head, r)
    assert decision is kept
    assert reason and ("kept" in reason) is kept
    assert "nan" not in reason


@pytest.mark.parametrize(("table", "kept"), [("same_property_scaled.csv", True), ("unrelated.csv", False)])
def test_default_head_follows_the_source_correlation(tmp_path, source_dir, data_dir, table, kept):
    """By default the head is kept (calibrated by least squares) only for the source's own property."""
    same = pd.read_csv(data_dir / "same_property.csv")
    same["target"] = 2.5 * same["target"] - 0.7  # same property, other unit and reference
    same.to_csv(data_dir / "same_property_scaled.csv", index=False)
    result = finetune(data_dir / table, tmp_path / "run", source=source_dir, strategy="head",
                      config=replace(QUICK, epochs=1, lr=1e-6), show_progress=False)
    assert result.card["head"]["kept"] is kept
    std = result.card["target"]["std"]
    if kept:  # the calibrated head already predicts the scaled property: tiny error after one tiny step
        assert result.metrics["val_mae"] < 0.05 * std, (result.metrics["val_mae"], std)
    else:
        assert result.metrics["val_mae"] > 0.3 * std


@pytest.mark.parametrize(("table", "strategy", "lr"), [
    ("same_property_scaled.csv", "full", 0), ("unrelated.csv", "full", 0), ("unrelated.csv", "full", 5e-4),
    ("unrelated.csv", "reinit", 0)])
def test_default_lr_follows_the_start(tmp_path, source_dir, data_dir, table, strategy, lr):
    """The default peak learning rate is the smaller one when the calibrated head is kept (the source
    property), the source's deeper features predict the target best, or the weights are fresh; else the
    larger one. A learning rate the user gives is used as given. The card says which and why."""
    same = pd.read_csv(data_dir / "same_property.csv")
    same["target"] = 2.5 * same["target"] - 0.7
    same.to_csv(data_dir / "same_property_scaled.csv", index=False)
    result = finetune(data_dir / table, tmp_path / "run", source=source_dir, strategy=strategy,
                      config=replace(QUICK, epochs=1, lr=lr), show_progress=False)
    rate = result.card["learning_rate"]
    if lr:
        assert result.card["training"]["lr"] == lr and rate["reason"] == "given (--lr)"
        return
    assert result.card["head"]["kept"] == (table == "same_property_scaled.csv")
    if result.card["head"]["kept"]:
        assert rate["near_source"] and "output layer is kept" in rate["reason"]
    elif strategy == "reinit":
        assert rate["reason"] == "fresh weights"  # no probe: the rate does not depend on the source
        assert rate["near_source"] is None
    else:
        assert "ridge probe" in rate["reason"]
    near_or_fresh = rate["near_source"] or strategy == "reinit"
    assert result.card["training"]["lr"] == (NEAR_LR if near_or_fresh else FAR_LR)


def test_source_closeness_reads_the_probes_best_layer():
    from types import SimpleNamespace

    from elemnet_tl.finetune import default_lr, source_closeness

    first = [{"candidate": "fc1"}, {"candidate": "fc16"}]
    assert source_closeness(False, SimpleNamespace(layers_=["fc16"], cv_table_=first)) == (
        True, "near source: its layer fc16 predicts the target best in a ridge probe")
    near, reason = source_closeness(False, SimpleNamespace(layers_=["fc1"], cv_table_=first))
    assert not near and reason.startswith("far source: its first layer, fc1,")
    assert source_closeness(True, None)[0] and not source_closeness(False, None)[0]
    config = replace(FINETUNE_DEFAULTS, lr=0)
    assert default_lr(config, True, Strategy("full")).lr == NEAR_LR
    assert default_lr(config, False, Strategy("full")).lr == FAR_LR
    assert default_lr(config, False, Strategy("reinit")).lr == NEAR_LR
    assert default_lr(replace(config, lr=1e-3), True, Strategy("full")).lr == 1e-3


def test_from_auto_picks_the_source_whose_features_predict_the_target(monkeypatch, tmp_path, source_dir, data_dir):
    """``--from auto`` probes each bundled source with a ridge regression on its activations and starts from
    the clearly better one; the card says which and why, and the run is the run from that source."""
    from elemnet_tl.pretrain import pretrain

    sources_module = importlib.import_module("elemnet_tl.sources")
    # the default (first) source pretrained on noise: its features are useless for the smooth target
    pretrain(data_dir / "unrelated.csv", tmp_path / "noise_source", arch=TINY_ARCH,
             config=FitConfig(epochs=3, batch_size=32), show_progress=False)
    candidates = [str(tmp_path / "noise_source"), str(source_dir)]
    monkeypatch.setattr(sources_module, "bundled_sources", lambda: candidates)
    config = replace(QUICK, epochs=3)
    from rich.console import Console

    printed = Console(record=True, width=200)
    monkeypatch.setattr(importlib.import_module("elemnet_tl.workflow"), "console", printed)
    result = finetune(data_dir / "smooth.csv", tmp_path / "run", source="auto", strategy="full", config=config,
                      show_progress=False, notices=True)
    lines = printed.export_text().splitlines()
    summary = next(i for i, line in enumerate(lines) if "rows read" in line)
    after = [line for line in lines[summary + 1:] if "groups of duplicates" not in line]  # the merged rows' list
    assert after[0].startswith(f"--from auto: {source_dir} — ")  # the choice, after the data summary
    # from Python as from the command line: the strategy, output layer and result (only the CLI printed them)
    assert any(line.startswith("strategy full — ") for line in lines)
    assert any(line.startswith("output layer ") and "peak learning rate" in line for line in lines)
    assert any(line.startswith("best validation MAE ") for line in lines)
    assert lines[-1] == f"run directory: {tmp_path / 'run'}"
    choice = json.loads((tmp_path / "run" / "card.json").read_text())["source_choice"]
    assert set(choice["probe"]) == set(candidates)
    assert choice["name"] == str(source_dir) == result.card["source_model"]["source"]
    assert choice["probe"][str(source_dir)] < choice["probe"][candidates[0]]
    assert "standard errors below the default" in choice["reason"]
    direct = finetune(data_dir / "smooth.csv", tmp_path / "direct", source=source_dir, strategy="full",
                      config=config, show_progress=False)
    assert result.card["metrics"] == direct.card["metrics"]  # the probe trains nothing


def test_pick_source_keeps_the_default_unless_another_is_clearly_better():
    from elemnet_tl.sources import SWITCH_SE, paired_se, pick_source

    base = np.array([1.0, 1.2, 0.9, 1.1, 1.0])
    noise = np.array([0.05, -0.05, 0.04, -0.04, 0.0])
    name, record = pick_source({"default": base, "other": base - 0.01 + noise})  # lower, within the noise
    assert name == "default" and "standard error" in record["reason"] and record["probe"]["other"] < 1.04
    name, record = pick_source({"default": base, "other": base - 0.2 + noise})  # lower by many errors
    assert name == "other" and record["name"] == "other"
    assert 0.2 / paired_se(noise, 0.25) > SWITCH_SE
    name, _ = pick_source({"default": base, "other": base + 0.3})
    assert name == "default"
    # the corrected standard error: sqrt((1/J + n_test/n_train) var), larger than the plain one
    assert paired_se(noise, 0.25) == pytest.approx(np.sqrt((1 / 5 + 0.25) * np.var(noise, ddof=1)))
    assert paired_se(noise, 0.25) > np.std(noise, ddof=1) / np.sqrt(5)
    assert paired_se(noise[:1], 0.25) == 0.0
    # a gap between the plain and the corrected error: the default is kept
    gap = 1.2 * np.std(noise, ddof=1) / np.sqrt(5)
    assert pick_source({"default": base, "other": base - gap + noise}, 0.25)[0] == "default"
    assert pick_source({"default": base, "other": base - gap + noise}, 0.0)[0] == "other"


def test_from_auto_with_one_bundled_model_needs_no_probe(monkeypatch, tmp_path, source_dir, data_dir):
    sources_module = importlib.import_module("elemnet_tl.sources")
    monkeypatch.setattr(sources_module, "bundled_sources", lambda: [str(source_dir)])
    result = finetune(data_dir / "smooth.csv", tmp_path / "run", source="auto", strategy="full",
                      config=replace(QUICK, epochs=2), show_progress=False)
    assert result.card["source_choice"] == {"name": str(source_dir), "reason": "the only bundled model", "probe": {}}


def test_auto_reason_names_negative_transfer():
    from types import SimpleNamespace

    from elemnet_tl.finetune import explain_choice

    tried = {"full": (SimpleNamespace(best_val_mae=0.5),), "reinit": (SimpleNamespace(best_val_mae=0.3),)}
    reason = explain_choice(tried, "reinit", 200, -0.1, "MPa")
    assert reason.startswith("reinit: lowest validation MAE (MPa) among reinit 0.3, full 0.5")
    assert "negative transfer" in reason
    assert "negative transfer" not in explain_choice(tried, "full", 200, -0.1, "MPa")


def test_api_strategy_and_ensemble_of_the_wrong_type(tmp_path, data_dir):
    for kwargs, message in (({"strategy": None}, "--strategy must be a name"),
                            ({"members": "2"}, "--ensemble must be a whole number"),
                            ({"members": 0}, "--ensemble must be a whole number")):
        with pytest.raises(ValueError, match=message):
            finetune(data_dir / "smooth.csv", tmp_path / "run", show_progress=False, **kwargs)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("card, words", [
    ({"split": {"validation": "seeded 5-row hold-out of the data", "n_val": 5}, "data": {}},
     ["val_mae is the best MAE on 5 training rows held out, which also chose the best epoch", "test metrics are null",
      "in eV"]),
    ({"split": {"validation": "file", "n_val": 9}, "data": {"test": {"rows_in_training_data": 0}},
      "strategy": {"name": "full", "candidates": ["full", "freeze:4", "full+pa"]},
      "ensemble": {"other_members_val_mae": [0.1, 0.2]}},
     ["val_mae is the first network's best MAE on the --val file", "the strategy among 3 candidates",
      "from the --test file, every kept row scored; in eV"]),
    ({"split": {"validation": "file", "n_val": 9}, "data": {"test": {"rows_in_training_data": 4}}},
     ["4 of them are compositions of the training data"]),
    ({"split": {"validation": "seeded 5-row hold-out of the data", "n_val": 5},
      "data": {"test": {"source": "seeded 0.1 hold-out of x.csv", "seed": 1, "rows_in_training_data": 0}}},
     ["test metrics from the seeded 0.1 hold-out of x.csv, never trained or validated on"]),
])
def test_a_training_card_says_what_its_metrics_are(card, words):
    from elemnet_tl.workflow import metrics_note

    note = metrics_note(card, "eV")
    for w in words:
        assert w in note, (w, note)


def test_one_composition_is_refused_by_every_training_command(tmp_path):
    """30 rows of Fe2O3: scikit-learn's 'Found array with 0 feature(s)' leaked out (--duplicates keep), or
    '1 usable row' without saying why; now one line that names the composition."""
    from conftest import one_line_error

    path = tmp_path / "same.csv"
    pd.DataFrame({"formula": ["Fe2O3"] * 30, "target": np.arange(30.0)}).to_csv(path, index=False)
    for command in (["finetune", str(path), "-o", str(tmp_path / "ft")],
                    ["finetune", str(path), "-o", str(tmp_path / "ft2"), "--duplicates", "keep"],
                    ["extract-features", str(path), "-o", str(tmp_path / "fx"), "--duplicates", "keep"],
                    ["compare-scratch", str(path), "-o", str(tmp_path / "cmp"), "--duplicates", "keep"],
                    ["pretrain", str(path), "-o", str(tmp_path / "pre")]):
        one_line_error(command, path, "every kept row has one composition, Fe2O3")
    assert not any(p.name in ("ft", "ft2", "fx", "cmp", "pre") for p in tmp_path.iterdir())


def test_a_kept_head_keeps_the_digits_of_a_large_offset():
    """The calibration of a kept output layer in float64: with a target offset by 1e6 the float32 arithmetic
    moved the starting bias by ~0.04 target units."""
    from elemnet_tl.finetune import rescale_head
    from elemnet_tl.model import ElemNet

    model = ElemNet("8x1")
    with torch.no_grad():
        model.layers["out"].bias.fill_(0.123456)
    x = torch.rand(5, 86)
    before = model(x).double() * 0.5 + 1e6  # predictions in target units, source scaler (mean 1e6, std 0.5)
    rescale_head(model, 1e6, 0.5, 1e6 + 0.25, 0.7)
    after = model(x).double() * 0.7 + (1e6 + 0.25)
    assert torch.allclose(before, after, rtol=0, atol=1e-5)
