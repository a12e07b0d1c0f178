"""Auto's greedy weight soup: the saved model is the one whose validation MAE the card reports."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from conftest import binary_table

from elemnet_tl.checkpoint import load_model
from elemnet_tl.featurize import load_and_prepare
from elemnet_tl.finetune import FINETUNE_DEFAULTS, finetune
from elemnet_tl.model import ElemNet
from elemnet_tl.pretrain import pretrain
from elemnet_tl.training import FitConfig, predict_tensor
from elemnet_tl.workflow import greedy_soup, split_indices


def _mae(model: ElemNet, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_tensor(model, x) - y).abs().mean())


def test_greedy_soup_returns_weights_that_give_its_mae():
    torch.manual_seed(0)
    x = torch.rand(64, 86)
    y = torch.randn(64)
    models = {name: ElemNet("16x2") for name in ("a", "b", "c")}
    ingredients = {n: (_mae(m, x, y), {k: v.clone() for k, v in m.state_dict().items()}) for n, m in models.items()}
    probe = ElemNet("16x2")
    names, val, state = greedy_soup(probe, ingredients, x, y, 1.0)
    best = min(ingredients, key=lambda k: ingredients[k][0])
    assert names[0] == best
    assert val <= ingredients[best][0]
    probe.load_state_dict(state)
    assert abs(_mae(probe, x, y) - val) < 1e-6


def test_auto_saves_the_model_it_reports(tmp_path):
    source_csv, data_csv = tmp_path / "source.csv", tmp_path / "data.csv"
    binary_table(300, seed=1).to_csv(source_csv, index=False)
    binary_table(200, seed=2).to_csv(data_csv, index=False)
    pretrain(source_csv, tmp_path / "src", arch="32x2-16x1", config=FitConfig(epochs=3, batch_size=32),
             show_progress=False)
    config = replace(FINETUNE_DEFAULTS, epochs=4)
    run = finetune(data_csv, tmp_path / "ft", source=tmp_path / "src", config=config, members=1, show_progress=False)
    data = load_and_prepare(data_csv)
    _, val_idx = split_indices(data.n_kept, 0.1, config.seed)
    loaded = load_model(tmp_path / "ft")
    pred = loaded.predict(torch.as_tensor(data.fractions[val_idx])).numpy()
    assert np.isclose(np.abs(pred - data.target[val_idx]).mean(), run.metrics["val_mae"], rtol=1e-4)
    assert run.card["strategy"]["auto"] is True


def test_members_of_a_chosen_soup_repeat_the_greedy_soup_on_their_own_split(tmp_path):
    from elemnet_tl.transfer import parse_strategy, strategy_phases
    from elemnet_tl.workflow import average_states, copy_state, load_training_inputs, train_members

    data_csv = tmp_path / "data.csv"
    binary_table(120, seed=3).to_csv(data_csv, index=False)
    inputs = load_training_inputs(data_csv, seed=0)
    config = FitConfig(epochs=3, batch_size=16, lr=1e-3, seed=0)
    torch.manual_seed(0)
    first = ElemNet("32x2-16x1")
    start = copy_state(first)
    y = inputs.train.target
    scaler = (float(y.mean()), float(y.std()))

    def recipe(name: str):
        return lambda m: strategy_phases(parse_strategy(name, len(m.layer_names)), m, config)

    def members(names: list[str], where: str) -> tuple[list[dict], dict]:
        ens, note = train_members(first, start, [recipe(n) for n in names], 3, inputs, scaler, tmp_path / where,
                                  seed=0, device=torch.device("cpu"), show=False, label="t", unit="")
        assert len(note["other_members_val_mae"]) == 2
        return [copy_state(m) for m in ens.members[1:]], note

    (full, _), (head, _) = members(["full"], "a"), members(["head"], "b")
    both, note = members(["full", "head"], "c")
    for i, used in enumerate(note["other_members_ingredients"]):  # each trains both on its split, then souped
        expected = average_states([[full[i], head[i]][j] for j in used])
        assert all(torch.allclose(both[i][k], expected[k], atol=1e-6) for k in expected)
    assert (tmp_path / "c" / "members" / "1_0" / "metrics.csv").is_file()
    assert (tmp_path / "c" / "members" / "1_1" / "metrics.csv").is_file()
