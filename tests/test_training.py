"""Training loop: determinism, learning-rate schedule, checkpoints and their errors, exact resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, binary_table, tiny_data
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from elemnet_tl.checkpoint import (
    CARD_FILE,
    MODEL_FILE,
    STATE_FILE,
    ModelInfo,
    load_model,
    load_state,
    save_model,
    save_state,
)
from elemnet_tl.cli import app
from elemnet_tl.compositions import parse_formulas
from elemnet_tl.datasets import sha256_of
from elemnet_tl.errors import InputError, TrainingDiverged
from elemnet_tl.model import ElemNet
from elemnet_tl.runs import train_in_run_dir
from elemnet_tl.training import FitConfig, fit, lr_factor, stops_early

ARCH = "32x2-16x1"


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def read_tensors(path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# ---------------------------------------------------------------- determinism

def _fit_once(seed: int, dropout: float = 0.0):
    torch.manual_seed(seed)
    model = ElemNet(ARCH, dropout=dropout)
    config = FitConfig(epochs=6, batch_size=32, patience=0, seed=seed)
    result = fit(model, *tiny_data(), config)
    return result, {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_run():
    r1, w1 = _fit_once(0, dropout=0.1)
    r2, w2 = _fit_once(0, dropout=0.1)
    assert [h.val_mae for h in r1.history] == [h.val_mae for h in r2.history]
    assert [h.train_loss for h in r1.history] == [h.train_loss for h in r2.history]
    assert (r1.best_epoch, r1.best_val_mae) == (r2.best_epoch, r2.best_val_mae)
    assert same_weights(w1, w2)
    r3, w3 = _fit_once(1, dropout=0.1)
    assert not same_weights(w1, w3)


def test_fit_keeps_best_weights_and_learns():
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    x_tr, y_tr, x_va, y_va = tiny_data()
    result = fit(model, x_tr, y_tr, x_va, y_va, FitConfig(epochs=8, batch_size=32, patience=0, lr=3e-3))
    assert len(result.history) == 8
    assert result.best_val_mae == min(h.val_mae for h in result.history)
    assert result.history[result.best_epoch - 1].val_mae == result.best_val_mae
    model.eval()
    with torch.no_grad():
        mae = float((model(x_va) - y_va).abs().mean())
    assert mae == pytest.approx(result.best_val_mae, rel=1e-5)  # the model holds the best epoch's weights
    assert result.best_val_mae < float((y_va - y_tr.mean()).abs().mean())  # better than predicting the mean


def test_early_stopping():
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    result = fit(model, *tiny_data(), FitConfig(epochs=200, batch_size=32, patience=2, lr=1e-6, warmup=0.0))
    assert result.stopped_early
    assert len(result.history) < 200
    assert len(result.history) - result.best_epoch == 2


# ---------------------------------------------------------------- learning-rate schedule

def test_divergence_is_an_error_not_a_model(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged, match="epoch 1 .*--lr"):
        fit(ElemNet(ARCH), *tiny_data(), FitConfig(epochs=3, batch_size=32, lr=1e8, warmup=0.0))
    data = tmp_path / "d.csv"
    binary_table(60).to_csv(data, index=False)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["pretrain", str(data), "-o", str(run), "--arch", ARCH, "--lr", "1e9",
                                      "--epochs", "2", "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at epoch 1") and "--lr" in last
    assert not (run / "model.safetensors").exists() and not (run / "card.json").exists()
    assert not (run / "train_state.safetensors").exists()


def test_lr_factor_warmup_then_cosine():
    total, warmup, final = 100, 0.1, 0.01
    f = [lr_factor(s, total, warmup, final) for s in range(total + 1)]
    # linear warm-up over 10 steps up to the peak
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    # cosine decay: monotone, halfway at the midpoint, final_lr at the end
    decay = f[10:]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert lr_factor(55, total, warmup, final) == pytest.approx(final + (1 - final) * 0.5)
    assert f[total] == pytest.approx(final)
    assert min(f) >= final - 1e-12 and max(f) <= 1.0 + 1e-12


def test_lr_factor_no_warmup():
    assert lr_factor(0, 50, 0.0, 0.1) == pytest.approx(1.0)
    assert lr_factor(50, 50, 0.0, 0.1) == pytest.approx(0.1)
    assert all(math.isfinite(lr_factor(s, 1, 0.05, 0.01)) for s in range(3))


# ---------------------------------------------------------------- model checkpoints

@pytest.fixture
def saved_model(tmp_path):
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    info = ModelInfo(arch=ARCH, dropout=0.0, target_mean=-1.5, target_std=0.75, target="e_form", unit="eV/atom")
    save_model(tmp_path / MODEL_FILE, model, info)
    return tmp_path, model, info


def test_save_load_round_trip(saved_model):
    run_dir, model, info = saved_model
    loaded = load_model(run_dir)  # a run directory
    assert loaded.info == info
    assert same_weights(loaded.model.state_dict(), model.state_dict())
    x = torch.as_tensor(parse_formulas(["NaCl", "Fe2O3", "XeF2"]).fractions, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        expected = model(x).double() * info.target_std + info.target_mean  # scaled in float64
    assert torch.equal(loaded.predict(x), expected)
    again = load_model(run_dir / MODEL_FILE)  # the file itself
    assert torch.equal(again.predict(x), expected)
    assert (run_dir / MODEL_FILE).stat().st_mode & 0o044 == 0o044  # others may read a model


def test_same_model_same_bytes(saved_model, tmp_path):
    """The file is a function of the weights and metadata (safetensors alone orders metadata at random)."""
    from elemnet_tl.checkpoint import write_safetensors

    run_dir, model, info = saved_model
    again = tmp_path / "again" / MODEL_FILE
    again.parent.mkdir()
    save_model(again, model, info)
    assert again.read_bytes() == (run_dir / MODEL_FILE).read_bytes()
    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, 2)}
    meta = {f"k{i}": str(i) for i in range(20)}
    write_safetensors(tmp_path / "x.safetensors", tensors, meta)
    write_safetensors(tmp_path / "y.safetensors", tensors, dict(reversed(meta.items())))
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "y.safetensors").read_bytes()
    from safetensors.torch import load_file

    assert torch.equal(load_file(tmp_path / "x.safetensors")["a"], tensors["a"])


def test_load_missing_model(tmp_path):
    with pytest.raises(InputError) as exc:
        load_model(tmp_path / "nowhere")
    assert "no model here" in one_line(exc)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_load_corrupted_model(saved_model, damage):
    run_dir, _, _ = saved_model
    path = run_dir / MODEL_FILE
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00not a safetensors file" * 10, "truncated": data[: len(data) // 2],
                      "empty": b""}[damage])
    with pytest.raises(InputError) as exc:
        load_model(run_dir)
    message = one_line(exc)
    assert str(path) in message and "safetensors" in message


def test_load_card_architecture_mismatch(saved_model):
    run_dir, _, _ = saved_model
    (run_dir / CARD_FILE).write_text(json.dumps({"model": {"arch": "64x2-32x1"}}))
    with pytest.raises(InputError) as exc:
        load_model(run_dir)
    message = one_line(exc)
    assert "64x2-32x1" in message and ARCH in message


def test_load_metadata_weights_mismatch(saved_model):
    run_dir, _, info = saved_model
    path = run_dir / MODEL_FILE
    save_file(read_tensors(path), str(path), metadata=replace(info, arch="64x2-32x1").to_metadata())
    with pytest.raises(InputError) as exc:
        load_model(run_dir)
    assert "do not match architecture" in one_line(exc)


def test_load_foreign_safetensors(tmp_path):
    save_file({"w": torch.zeros(3)}, str(tmp_path / MODEL_FILE))
    with pytest.raises(InputError) as exc:
        load_model(tmp_path)
    assert "not an elemnet_tl model" in one_line(exc)


def test_load_nan_weights(saved_model):
    run_dir, model, info = saved_model
    with torch.no_grad():
        model.layers["fc1"].weight[0, 0] = float("nan")
    save_model(run_dir / MODEL_FILE, model, info)
    with pytest.raises(InputError) as exc:
        load_model(run_dir)
    assert "NaN" in one_line(exc)


def test_load_corrupted_card(saved_model):
    run_dir, _, _ = saved_model
    (run_dir / CARD_FILE).write_text("{not json")
    with pytest.raises(InputError) as exc:
        load_model(run_dir)
    assert "card" in one_line(exc)


# ---------------------------------------------------------------- training state

def test_state_round_trip(tmp_path):
    path = tmp_path / STATE_FILE
    torch.manual_seed(0)
    model = ElemNet(ARCH)
    saved: dict = {}  # copies as they were after epoch 2 (fit keeps mutating the live state)

    def grab(log, st):
        if st.epoch == 2:
            save_state(path, st)
            saved.update(epoch=st.epoch, best_val=st.best_val, best_epoch=st.best_epoch,
                         val=[h.val_mae for h in st.history], model={k: v.clone() for k, v in st.model.items()},
                         best={k: v.clone() for k, v in st.best_model.items()}, rng=st.rng.clone(),
                         opt=st.optimizer)

    fit(model, *tiny_data(), FitConfig(epochs=3, batch_size=32, patience=0), on_epoch=grab)
    back = load_state(path)
    assert back.epoch == 2 and not back.done
    assert (back.best_val, back.best_epoch) == (saved["best_val"], saved["best_epoch"])
    assert [h.val_mae for h in back.history] == saved["val"]
    assert same_weights(back.model, saved["model"]) and same_weights(back.best_model, saved["best"])
    assert torch.equal(back.rng, saved["rng"])
    assert back.optimizer["param_groups"][0]["base_lr"] == pytest.approx(1e-3)
    assert set(back.optimizer["state"]) == set(range(len(list(model.parameters()))))


def test_load_corrupted_state(tmp_path):
    path = tmp_path / STATE_FILE
    path.write_bytes(b"\x07" * 100)
    with pytest.raises(InputError) as exc:
        load_state(path)
    assert "cannot resume" in one_line(exc)


# ---------------------------------------------------------------- resume = uninterrupted

class Interrupt(Exception):
    pass


@pytest.mark.parametrize(("ema_epochs", "ctrl_c"), [(0.0, False), (2.0, False), (0.0, True)])
def test_resume_in_process_equals_uninterrupted(tmp_path, ema_epochs, ctrl_c):
    """Stop after epoch 5 (the state of epoch 4 is on disk), resume: same history and weights as one run.

    ``ctrl_c``: no periodic save ran; Ctrl-C writes the in-memory copy of the last finished epoch."""
    data = tiny_data()
    config = FitConfig(epochs=9, batch_size=32, patience=0, seed=3)
    if ema_epochs:
        config = replace(config, ema_epochs=ema_epochs)  # the moving average must resume too
    record = {"test": "resume"}

    def run(run_dir, resume=False, stop_at=None):
        torch.manual_seed(3)
        model = ElemNet(ARCH, dropout=0.1)  # dropout: the RNG state must be restored too

        def on_epoch(log, st):
            if st.epoch == stop_at:
                raise KeyboardInterrupt if ctrl_c else Interrupt

        trained = train_in_run_dir(run_dir, model, data, config, record, device=torch.device("cpu"), y_scale=1.0,
                                   resume=resume, on_epoch=on_epoch, save_every=1e9 if ctrl_c else 0.0,
                                   snapshot_every=0.0 if ctrl_c else 1e9)
        return trained.fit, model.state_dict()

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full, full_weights = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt if ctrl_c else Interrupt):
        run(tmp_path / "b", stop_at=5)
    assert load_state(tmp_path / "b" / STATE_FILE).epoch == 4
    resumed, resumed_weights = run(tmp_path / "b", resume=True)
    assert [h.val_mae for h in resumed.history] == [h.val_mae for h in full.history]
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in full.history]
    assert (resumed.best_epoch, resumed.best_val_mae) == (full.best_epoch, full.best_val_mae)
    assert same_weights(resumed_weights, full_weights)
    metrics = pd.read_csv(tmp_path / "b" / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(1, 10))
    if not ctrl_c and not ema_epochs:  # another record: refused, naming what differs
        (tmp_path / "c").mkdir()
        with pytest.raises(Interrupt):
            run(tmp_path / "c", stop_at=5)
        record["test"] = "other"
        with pytest.raises(InputError, match=r"interrupted run \(test differs\)$"):
            run(tmp_path / "c", resume=True)


# Runs `elemtl` with the resumable state saved after every epoch (the CLI saves it at most every 15 s;
# see the proposed ELEMTL_SAVE_EVERY in the report), so a kill lands between two saved epochs.
LAUNCH = (
    "import sys; import elemnet_tl.runs as r; d = r.train_in_run_dir.__kwdefaults__ or {}; "
    "d.update(save_every=0.0) if 'save_every' in d else None; "
    "from elemnet_tl.cli import main; sys.argv = ['elemtl', *sys.argv[1:]]; main()"
)
EPOCHS = 100


def _pretrain_args(data, out) -> list[str]:
    return ["pretrain", str(data), "-o", str(out), "--arch", ARCH, "--epochs", str(EPOCHS), "--batch-size", "32",
            "--patience", "0", "--seed", "0", "--device", "cpu", "-q"]


def test_kill_9_then_resume_equals_uninterrupted(tmp_path):
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS, pretrain

    data = tmp_path / "train.csv"
    binary_table(400, seed=5).to_csv(data, index=False)
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "ELEMTL_SAVE_EVERY": "0"}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *_pretrain_args(data, killed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = killed / STATE_FILE
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # kill once a few epochs are on disk
        if state.exists() and load_state(state).epoch >= 5:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {output[-2000:]}"
    assert not (killed / MODEL_FILE).exists()
    stopped_at = load_state(state).epoch
    assert 0 < stopped_at < EPOCHS

    # without --resume the interrupted run is protected
    refused = CliRunner().invoke(app, _pretrain_args(data, killed))
    assert refused.exit_code == 2 and "--resume" in refused.output

    done = subprocess.run([sys.executable, "-c", LAUNCH, *_pretrain_args(data, killed), "--resume"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not state.exists()

    config = replace(PRETRAIN_DEFAULTS, epochs=EPOCHS, batch_size=32, patience=0, seed=0)
    straight = pretrain(data, tmp_path / "straight", arch=ARCH, config=config, device="cpu", show_progress=False)

    card = json.loads((killed / CARD_FILE).read_text())
    assert card["metrics"] == straight.card["metrics"]
    for key in ("best_epoch", "epochs_run", "stopped_early"):
        assert card["training"][key] == straight.card["training"][key], key
    a = pd.read_csv(killed / "metrics.csv")
    b = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    assert a["epoch"].tolist() == list(range(1, EPOCHS + 1))
    np.testing.assert_array_equal(a["val_mae"], b["val_mae"])
    assert same_weights(read_tensors(killed / MODEL_FILE), read_tensors(tmp_path / "straight" / MODEL_FILE))


def test_portable_optimizer_state_has_float_rates():
    """A capturable optimizer keeps its rates as tensors; the saved state must hold plain floats."""
    from elemnet_tl.training import _portable_optimizer_state

    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([{"params": [param], "lr": torch.tensor(0.01), "base_lr": 0.01}], lr=0.01)
    groups = _portable_optimizer_state(opt)["param_groups"]
    assert json.loads(json.dumps(groups))[0]["lr"] == pytest.approx(0.01)
    assert torch.is_tensor(opt.param_groups[0]["lr"])  # the live optimizer is untouched


def test_train_step_graph_request_on_cpu_stays_eager():
    from elemnet_tl.training import TrainStep, make_optimizer

    torch.manual_seed(0)
    model = ElemNet(ARCH)
    x, y, _, _ = tiny_data()
    opt = make_optimizer([{"params": list(model.parameters()), "base_lr": 1e-3}], FitConfig())
    step = TrainStep(model, opt, torch.nn.L1Loss(), x, y, 32, torch.device("cpu"), graph=True)
    before = [p.detach().clone() for p in model.parameters()]
    step(torch.arange(32), 1.0)
    assert not step.use_graph and step.graph is None
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert float(step.loss_sum) > 0


def test_quiet_run_still_reports_its_data(tmp_path):
    """-q hides the progress bar only: the data summary, rejected rows and warnings still print."""
    from conftest import MESSY

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["pretrain", str(MESSY), "-o", str(run), "--arch", "16x2", "--epochs", "1",
                                      "--test", str(MESSY), "-q"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "28 rows read, 10 rejected, 4 merged, 14 kept (duplicates: most-stable" in out
    assert f"10 rejected rows of {MESSY} listed in {run / 'train.rejected.csv'}" in out
    assert "test file " in out and "of the training data" not in out
    assert "test rows of" in out and "also in the training data" in out
    assert (run / "train.rejected.csv").is_file() and (run / "test.rejected.csv").is_file()
    assert "━" not in result.output  # no bar
    assert "held out" not in out  # a test file is not taken from the training rows
    card = json.loads((run / "card.json").read_text())  # and the overlap stays on record, not only on screen
    seen = card["data"]["test"]["rows_in_training_data"]
    assert seen > 0 and f"{seen} of them are compositions of the training data" in card["metrics_note"]


def test_test_fraction_is_counted_as_held_out_of_the_kept_rows(tmp_path):
    import json

    from conftest import BAND_GAPS

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["pretrain", str(BAND_GAPS), "-o", str(run), "--arch", "16x2", "--epochs", "1",
                                      "--test-fraction", "0.2", "-q"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "65 rows read, 0 rejected, 2 merged, 63 kept (duplicates:" in out
    assert "; 13 of them held out for testing" in out
    data = json.loads((run / "card.json").read_text())["data"]
    assert (data["train"]["kept"], data["train"]["kept_for_training"], data["test"]["kept"]) == (63, 50, 13)
    # the card counts the elements of the rows the single network trained on (50 minus 5 validating)
    card = json.loads((run / "card.json").read_text())
    assert card["split"]["n_train"] == 45 and max(data["train"]["element_rows"].values()) <= 45
    # not part of the run record that --resume compares: runs started before it was recorded still resume
    assert "element_rows" not in json.loads((run / "run.json").read_text())["data"]["train"]


def test_shared_compositions_counts_equal_compositions_written_differently():
    from elemnet_tl.featurize import shared_compositions

    a = parse_formulas(["Fe2O3", "NaCl", "LiF"]).fractions
    b = parse_formulas(["O3Fe2", "KCl", "Fe4O6", "LiF"]).fractions
    assert shared_compositions(a, b) == 2
    assert shared_compositions(b, a) == 3
    assert shared_compositions(a[:0], b) == 0


def test_early_stopping_waits_for_min_epochs():
    """Patience counts epochs without improvement, but nothing stops before ``min_epochs``."""
    plain = FitConfig(epochs=100, patience=10)
    assert not stops_early(19, 10, plain) and stops_early(20, 10, plain)
    held = replace(plain, min_epochs=50)
    assert not stops_early(20, 10, held) and not stops_early(49, 10, held) and stops_early(50, 10, held)
    assert not stops_early(99, 1, replace(plain, patience=0))  # 0: never early


def test_fit_runs_at_least_min_epochs():
    model = ElemNet(ARCH)
    config = FitConfig(epochs=12, batch_size=32, patience=1, min_epochs=9, lr=1e-6, warmup=0.0)
    result = fit(model, *tiny_data(), config)
    assert len(result.history) >= 9


@pytest.mark.parametrize("values, expected", [
    ([1.5] * 6, "is 1.5 on every kept row: there is nothing to learn"),
    ([0, 1, 1, 0, 1, 0], "takes only two values (0, 1): if it is a class label"),
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], None),
    ([0.1, 0.2, 0.3, 0.4, 1e30, 0.6], "has 1 value more than 100 times its 10-90 % range from the median 0.35 "
                                      "(the farthest: line 6, 1e+30): a typo or another unit?"),
    ([0.1, 0.2, 0.3, 0.4, 30.0, 0.6], None),  # far (74 ranges), but not absurdly: heavy tails are real
    ([1e-4, 1e-2, 1.0, 1e2, 1e4, 3e-3], "is positive and spans 6.5 decades in its 10-90 % range"),  # log10 hint
    ([1e-4, 1e-2, 1.0, 1e2, 1e4, -3e-3], None),  # not positive: no log
])
def test_target_warning_names_constant_and_two_valued_targets(tmp_path, values, expected):
    from elemnet_tl.featurize import load_and_prepare, target_warning

    path = tmp_path / "t.csv"
    pd.DataFrame({"formula": ["NaCl", "KCl", "LiF", "MgO", "CaO", "SrO"], "target": values}).to_csv(path, index=False)
    warning = target_warning(load_and_prepare(path, None, None, "auto"))
    if expected is None:
        assert warning is None
    else:
        assert warning.startswith(f"warning: the target of {path}") and expected in warning


def test_pretrain_prints_the_target_warning(tmp_path):
    path = tmp_path / "labels.csv"
    formulas = ["NaCl", "KCl", "LiF", "MgO", "CaO", "SrO", "BaO", "NaF", "KF", "LiCl"]
    pd.DataFrame({"formula": formulas, "is_metal": [0, 1] * 5}).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["pretrain", str(path), "-o", str(tmp_path / "run"), "--arch", "16x2",
                                      "--epochs", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "takes only two values (0, 1)" in " ".join(result.output.split())


def test_member_seeds_stay_in_range():
    """Ensemble members' seeds lie 7919 apart; from the largest --seed they wrap instead of failing late."""
    from elemnet_tl.training import MAX_SEED, member_seed

    assert [member_seed(7, i) for i in range(3)] == [7, 7 + 7919, 7 + 2 * 7919]
    assert [member_seed(MAX_SEED, i) for i in range(3)] == [MAX_SEED, 7918, 2 * 7919 - 1]
    # repeats with nearby seeds share no network (seed + member did: member 1 of seed 0 was seed 1's first)
    seeds = [member_seed(s, i) for s in range(10) for i in range(7)]
    assert len(set(seeds)) == len(seeds)
    FitConfig(seed=member_seed(MAX_SEED, 2))  # a valid seed



@pytest.mark.parametrize("unit", [1e-20, 1.0, 1e20])
def test_target_scaler_and_correlation_do_not_depend_on_the_unit(unit):
    """A target in tiny units (a diffusivity in cm^2/s) varies: it is scaled by its own spread, not called
    constant; a constant target gets scale 1 and no correlation."""
    from elemnet_tl.finetune import source_correlation
    from elemnet_tl.training import is_constant, standardize

    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 2.0, size=200)
    pred = y + rng.normal(size=200)
    mean, std = standardize(y * unit)
    assert mean == pytest.approx(y.mean() * unit, rel=1e-12) and std == pytest.approx(y.std() * unit, rel=1e-12)
    assert source_correlation(pred, y * unit) == pytest.approx(np.corrcoef(pred, y)[0, 1], rel=1e-12)
    constant = np.full(50, 0.1 * unit)
    assert is_constant(constant) and standardize(constant)[1] == 1.0
    assert math.isnan(source_correlation(pred[:50], constant))
    assert is_constant(np.zeros(5)) and is_constant(np.ones(1)) and not is_constant(np.array([0.0, 1e-30]))


def test_json_files_are_strict_json(tmp_path):
    """R² of a one-row test set is NaN: written as null (bare NaN is not JSON), read back equal for --resume."""
    from elemnet_tl.io import jsonable, write_json

    record = {"metrics": {"test_mae": np.float32(0.5), "test_r2": float("nan")}, "curve": (float("inf"), 1),
              "n": np.int64(3)}
    write_json(tmp_path / "card.json", record)

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    back = json.loads((tmp_path / "card.json").read_text(), parse_constant=refuse)
    assert back == {"metrics": {"test_mae": 0.5, "test_r2": None}, "curve": [None, 1], "n": 3}
    assert jsonable(record) == back


def test_changed_weights_are_refused_by_the_card(source_dir, tmp_path):
    """Bytes overwritten inside the weights (finite values, so no NaN check catches them) gave silently wrong
    predictions; the card records the weights' sha256 and loading checks it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(source_dir, run)
    assert load_model(run).card["model"]["sha256"]
    path = run / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[-400:-200] = b"\x41" * 200  # float32 12.0 repeated: finite
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as exc:
        load_model(run)
    message = one_line(exc)
    assert str(path) in message and "differ from what card.json records" in message
    bundled = load_model("bundled")  # the bundled cards record theirs too
    assert bundled.card["model"]["sha256"] == sha256_of(bundled.path)


def test_bundle_script_writes_a_model_that_loads(tmp_path):
    """scripts/bundle_model.py names the target of a run trained from a CSV (the model file changes): its card
    must record the new file's sha256, or every `bundled` load would be refused."""
    from elemnet_tl.pretrain import pretrain
    from elemnet_tl.training import FitConfig

    binary_table(60, seed=4).to_csv(tmp_path / "t.csv", index=False)
    pretrain(tmp_path / "t.csv", tmp_path / "run", arch="16x2", test_fraction=0.2,
             config=FitConfig(epochs=2, batch_size=16), show_progress=False)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bundle_model.py"), str(tmp_path / "run"),
                           str(tmp_path / "dest"), "band gap", "eV"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = load_model(tmp_path / "dest")
    assert (loaded.info.target, loaded.info.unit) == ("band gap", "eV")
    assert loaded.card["model"]["sha256"] == sha256_of(tmp_path / "dest" / MODEL_FILE)


def test_a_target_offset_by_1e9_keeps_its_digits(tmp_path):
    """Predictions were scaled back in float32: a target near 1e9 came out in steps of 64."""
    from elemnet_tl.pretrain import pretrain
    from elemnet_tl.training import FitConfig

    frame = binary_table(80, seed=5).drop_duplicates("formula")
    x = torch.as_tensor(parse_formulas(frame["formula"]).fractions, dtype=torch.float32)
    preds = []
    for offset in (0.0, 1e9):
        frame.assign(target=frame["target"] + offset).to_csv(tmp_path / "t.csv", index=False)
        result = pretrain(tmp_path / "t.csv", tmp_path / str(offset), arch="16x2", test=tmp_path / "t.csv",
                          config=FitConfig(epochs=3, batch_size=16), show_progress=False, notices=False)
        preds.append(load_model(tmp_path / str(offset)).predict(x).numpy() - offset)
        test = pd.read_csv(result.run_dir / "test_predictions.csv")
        assert np.abs(test["prediction"] - offset - preds[-1]).max() < 1e-3  # the run's own test scores too
    np.testing.assert_allclose(preds[1], preds[0], atol=1e-3)
