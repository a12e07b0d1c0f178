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
