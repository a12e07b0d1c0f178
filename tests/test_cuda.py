"""The training loop on a CUDA GPU (skipped where there is none): the step replayed as a CUDA graph
trains as the eager step does, follows the learning-rate schedule, leaves frozen layers alone, and a
run saved with tensor learning rates resumes."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_data
from torch import nn

from elemnet_tl.model import ElemNet
from elemnet_tl.runs import train_in_run_dir
from elemnet_tl.training import GRAPH_WARMUP_STEPS, FitConfig, TrainStep, fit, make_optimizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ARCH = "32x2-16x1"
CUDA = torch.device("cuda")


def _fit(graph: bool, model: ElemNet | None = None):
    torch.manual_seed(0)
    model = model or ElemNet(ARCH)
    result = fit(model, *tiny_data(), FitConfig(epochs=8, batch_size=32, patience=0, lr=3e-3), device=CUDA,
                 cuda_graph=graph)
    return result, model


def test_graph_trains_like_eager():
    graph, _ = _fit(True)
    eager, _ = _fit(False)
    assert [h.val_mae for h in graph.history] == pytest.approx([h.val_mae for h in eager.history], rel=0.02)
    _, y_tr, _, y_va = tiny_data()
    assert graph.best_val_mae < float((y_va - y_tr.mean()).abs().mean())


def test_train_step_replays_with_the_scheduled_rate():
    torch.manual_seed(0)
    model = ElemNet(ARCH).to(CUDA)
    x, y, _, _ = tiny_data()
    opt = make_optimizer([{"params": list(model.parameters()), "base_lr": 1e-3}], FitConfig(), capturable=True)
    step = TrainStep(model, opt, nn.L1Loss(), x.to(CUDA), y.to(CUDA), 32, CUDA, graph=True)
    idx = torch.arange(32, device=CUDA)
    for _ in range(GRAPH_WARMUP_STEPS + 1):
        step(idx, 1.0)
    assert step.graph is not None  # captured after the warm-up steps
    before = [p.detach().clone() for p in model.parameters()]
    step(idx, 0.0)  # rate 0: a replay must not move the weights
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    step(idx, 1.0)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert float(step.loss_sum) > 0


def test_frozen_layer_stays_frozen_under_graph():
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    model.layers["fc1"].requires_grad_(False)
    first = model.layers["fc1"].weight.detach().clone()
    last = model.layers["out"].weight.detach().clone()
    _fit(True, model)
    assert torch.equal(model.layers["fc1"].weight.detach().cpu(), first)
    assert not torch.equal(model.layers["out"].weight.detach().cpu(), last)


class Interrupt(Exception):
    pass


def test_resume_on_cuda(tmp_path):
    data = tiny_data()
    config = FitConfig(epochs=6, batch_size=32, patience=0, seed=3)

    def run(run_dir, resume=False, stop_at=None):
        torch.manual_seed(3)
        model = ElemNet(ARCH)

        def on_epoch(log, st):
            if st.epoch == stop_at:
                raise Interrupt

        return train_in_run_dir(run_dir, model, data, config, {"test": "cuda"}, device=CUDA, y_scale=1.0,
                                resume=resume, on_epoch=on_epoch, save_every=0.0).fit

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = run(tmp_path / "a")
    with pytest.raises(Interrupt):
        run(tmp_path / "b", stop_at=3)
    resumed = run(tmp_path / "b", resume=True)
    assert len(resumed.history) == 6
    assert [h.val_mae for h in resumed.history] == pytest.approx([h.val_mae for h in full.history], rel=0.02)
