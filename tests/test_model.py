"""ElemNet: the study's architecture, parse_arch, layer names and groups, activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elemnet_tl.model import DEFAULT_ARCH, ElemNet, count_parameters, parse_arch


def test_default_architecture():
    model = ElemNet()
    assert model.arch == DEFAULT_ARCH == "1024x4-512x3-256x3-128x3-64x2-32x1"
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 17
    assert count_parameters(model) == 4_631_361
    assert count_parameters(model, trainable_only=True) == 4_631_361
    assert linears[0].in_features == 86 and linears[0].out_features == 1024
    assert linears[-1].in_features == 32 and linears[-1].out_features == 1
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_dropout_adds_dropout():
    model = ElemNet("32x2-16x1", dropout=0.2)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(d.p == pytest.approx(0.2) for d in drops)
    # dropout is active in training mode only
    x = torch.rand(64, 86)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.equal(a, b)


def test_trainable_only_counts_frozen_layers_out():
    model = ElemNet("32x2-16x1")
    for p in model.layers["fc1"].parameters():
        p.requires_grad_(False)
    assert count_parameters(model) - count_parameters(model, trainable_only=True) == 86 * 32 + 32


@pytest.mark.parametrize("arch, widths", [
    ("1024x4-512x3-256x3-128x3-64x2-32x1", [1024] * 4 + [512] * 3 + [256] * 3 + [128] * 3 + [64] * 2 + [32]),
    ("1024x4-512x3-256x3-128x3-64x2-32x1-1", [1024] * 4 + [512] * 3 + [256] * 3 + [128] * 3 + [64] * 2 + [32]),
    ("32x2-16x1", [32, 32, 16]),
    ("32x2-16x1-1", [32, 32, 16]),
    (" 32x2 - 16x1 ", [32, 32, 16]),
    ("8x1", [8]),
])
def test_parse_arch_accepts(arch, widths):
    assert parse_arch(arch) == widths


@pytest.mark.parametrize("arch", ["", "abc", "32", "32x", "x2", "32x2-", "-1", "32X2", "32x2--16x1", "32x2-16x1-1-1",
                                  "0x2", "32x0", "32x2,16x1", "1.5x2", "-32x2"])
def test_parse_arch_rejects(arch):
    with pytest.raises(ValueError, match="architecture"):
        parse_arch(arch)


def test_layer_names_and_groups_default():
    model = ElemNet()
    assert model.layer_names == [f"fc{i}" for i in range(1, 17)] + ["out"]
    assert model.groups == {
        "g1": ["fc1", "fc2", "fc3", "fc4"],
        "g2": ["fc5", "fc6", "fc7"],
        "g3": ["fc8", "fc9", "fc10"],
        "g4": ["fc11", "fc12", "fc13"],
        "g5": ["fc14", "fc15"],
        "g6": ["fc16"],
        "head": ["out"],
    }
    assert sum(len(v) for v in model.groups.values()) == 17


def test_groups_tiny():
    model = ElemNet("32x2-16x1")
    assert model.layer_names == ["fc1", "fc2", "fc3", "out"]
    assert model.groups == {"g1": ["fc1", "fc2"], "g2": ["fc3"], "head": ["out"]}
    assert [model.layers[n].out_features for n in model.layer_names] == [32, 32, 16, 1]


def test_forward_and_activation_shapes():
    torch.manual_seed(0)
    model = ElemNet("32x2-16x1").eval()
    x = torch.softmax(torch.rand(5, 86), dim=1)
    y = model(x)
    assert y.shape == (5,)
    acts = model.activations(x, ["fc1", "fc3", "out"])
    assert set(acts) == {"fc1", "fc3", "out"}
    assert acts["fc1"].shape == (5, 32)
    assert acts["fc3"].shape == (5, 16)
    assert (acts["fc1"] >= 0).all() and (acts["fc3"] >= 0).all()  # post-ReLU
    torch.testing.assert_close(acts["out"].reshape(-1), y)
    # the last hidden activation times the output layer gives the prediction
    out = model.layers["out"]
    torch.testing.assert_close(out(acts["fc3"]).reshape(-1), y)


def test_activations_unknown_layer():
    with pytest.raises(ValueError, match="fc9"):
        ElemNet("32x2-16x1").activations(torch.rand(2, 86), ["fc9"])


def test_init_is_seeded_and_reset_head_changes_only_the_head():
    torch.manual_seed(1)
    a = ElemNet("32x2-16x1")
    torch.manual_seed(1)
    b = ElemNet("32x2-16x1")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    a.reset_head()
    after = a.state_dict()
    assert not torch.equal(before["layers.out.weight"], after["layers.out.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("layers.out."))
