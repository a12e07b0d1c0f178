"""Time-to-accuracy: the project's training loop vs a naive PyTorch loop, same data, same wall-clock budget.

Both train ElemNet on the same Materials Project formation-energy compositions (deduplicated, seeded
split: 10 % test held out, then 10 % validation) and report samples/s and the validation MAE reached
within ``--budget`` seconds.

naive: DataLoader over a TensorDataset, shuffled, batch 32, Adam 1e-3 at a constant rate, PyTorch's
default layer initialisation, raw (unstandardized) target, ``.item()`` every step.
project: ``elemnet_tl.training.fit`` with the pretraining recipe (standardized target, He init,
AdamW with warm-up + cosine decay, batch 512, data resident as tensors), its epoch count set so the
schedule ends within the budget.

On a GPU (``--device cuda``) the naive loop moves each batch to the GPU as it comes from the
DataLoader; the project's loop keeps the data there and uses bf16 autocast. The project's epoch
count is the pretraining recipe's (120) or fewer when the budget is shorter.

Usage: python scripts/bench_training.py [--budget 600] [--threads 2] [--device cpu|cuda]
Needs ../shared/data, or $ELEMTL_SHARED/data (skips with a message when absent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ELEMTL_SHARED", ROOT.parent / "shared")) / "data" / "source" / "matbench_mp_e_form.csv.gz"


def load():
    from elemnet_tl.featurize import load_and_prepare
    from elemnet_tl.workflow import split_indices

    f = load_and_prepare(DATA, duplicates="most-stable")
    keep, _test = split_indices(f.n_kept, 0.1, 1)
    tr, va = split_indices(len(keep), 0.1, 0)
    x, y = f.fractions[keep], f.target[keep]
    return x[tr], y[tr], x[va], y[va]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device,
               graph: bool = False, seconds: float = 8.0) -> float:
    """Samples/s of the project's step (forward + backward + fused AdamW, data resident) at ``batch``;
    ``graph``: replayed as a CUDA graph, as ``fit`` does on a GPU."""
    from elemnet_tl.training import FitConfig, TrainStep, make_optimizer

    model.to(device)
    x, y = x.to(device), y.to(device)
    opt = make_optimizer([{"params": list(model.parameters()), "base_lr": 1e-4}], FitConfig(lr=1e-4),
                         capturable=graph)
    step = TrainStep(model, opt, nn.L1Loss(), x, y, batch, device, graph=graph)

    def run(k: int) -> None:
        for _ in range(k):
            step(torch.randint(0, len(x), (batch,), device=device), 1.0)

    run(10)  # warm-up: kernel selection, allocator, graph capture
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run(10)
        n += 10 * batch
        sync(device)
    return n / (time.perf_counter() - t0)


def naive(x_tr, y_tr, x_va, y_va, budget: float, device: torch.device, batch: int = 32) -> dict:
    from elemnet_tl.model import ElemNet

    torch.manual_seed(0)
    model = ElemNet()
    for layer in model.layers.values():
        layer.reset_parameters()  # PyTorch's default initialisation
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x_tr), torch.tensor(y_tr,
                                         dtype=torch.float32)), batch_size=batch, shuffle=True)
    xv, yv = torch.tensor(x_va).to(device), torch.tensor(y_va, dtype=torch.float32).to(device)
    t0, curve, samples, best = time.perf_counter(), [], 0, float("inf")
    evals_per_epoch = 4
    every = max(1, len(loader) // evals_per_epoch)
    while time.perf_counter() - t0 < budget:
        for i, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(device), yb.to(device)
            loss = (model(xb) - yb).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            _ = loss.item()
            samples += len(xb)
            if (i + 1) % every == 0 or time.perf_counter() - t0 >= budget:
                with torch.no_grad():
                    model.eval()
                    mae = float((model(xv) - yv).abs().mean())
                    model.train()
                best = min(best, mae)
                curve.append((round(time.perf_counter() - t0, 1), mae))
            if time.perf_counter() - t0 >= budget:
                break
    wall = time.perf_counter() - t0
    return {"best_val_mae": best, "final_val_mae": curve[-1][1], "samples_per_s": samples / wall, "wall_s": wall,
            "curve": curve}


def project(x_tr, y_tr, x_va, y_va, budget: float, epoch_seconds: float, device: torch.device) -> dict:
    from elemnet_tl.model import ElemNet
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS
    from elemnet_tl.training import fit, standardize

    mean, std = standardize(y_tr)
    epochs = max(1, min(PRETRAIN_DEFAULTS.epochs, int(budget / epoch_seconds)))
    cfg = replace(PRETRAIN_DEFAULTS, epochs=epochs, patience=0)
    torch.manual_seed(0)
    model = ElemNet()
    curve = []
    t0 = time.perf_counter()

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    result = fit(model, t(x_tr), t((y_tr - mean) / std), t(x_va), t((y_va - mean) / std), cfg, y_scale=std,
                 device=device,
                 on_epoch=lambda log, st: curve.append((round(time.perf_counter() - t0, 1), log.val_mae)))
    wall = time.perf_counter() - t0
    return {"best_val_mae": result.best_val_mae, "final_val_mae": curve[-1][1], "epochs": epochs,
            "samples_per_s": epochs * len(y_tr) / wall, "wall_s": wall, "curve": curve}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="wall-clock seconds per loop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--batches", default="32,512", help="batch sizes of the raw throughput measurement")
    parser.add_argument("--out", default="docs/bench_training.json")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skip: {DATA} not found (needs ../shared/data)")
        return 0
    torch.set_num_threads(args.threads)
    from elemnet_tl.model import ElemNet
    from elemnet_tl.training import resolve_device

    device = resolve_device(args.device)

    x_tr, y_tr, x_va, y_va = load()
    print(f"{len(y_tr)} training / {len(y_va)} validation compositions; budget {args.budget:.0f} s per loop")
    xt, yt = torch.tensor(x_tr[:8192]), torch.tensor(y_tr[:8192], dtype=torch.float32)
    batches = sorted({512, *(int(b) for b in args.batches.split(","))})
    gpu = device.type == "cuda"
    secs = 4.0 if gpu else 8.0
    speed = {b: throughput(ElemNet(), xt, yt, b, device, graph=gpu, seconds=secs) for b in batches}
    print("raw step throughput (samples/s):", {k: round(v) for k, v in speed.items()})
    eager = {b: throughput(ElemNet(), xt, yt, b, device, seconds=secs) for b in batches} if gpu else speed
    if gpu:
        print("  without the CUDA graph:", {k: round(v) for k, v in eager.items()})
    ours = project(x_tr, y_tr, x_va, y_va, args.budget * 0.97, len(y_tr) / speed[512] * 1.08, device)
    print(f"project: best val MAE {ours['best_val_mae']:.4f} in {ours['wall_s']:.0f} s ({ours['epochs']} epochs, "
          f"{ours['samples_per_s']:.0f} samples/s)")
    base = naive(x_tr, y_tr, x_va, y_va, args.budget, device)
    print(f"naive:   best val MAE {base['best_val_mae']:.4f} in {base['wall_s']:.0f} s "
          f"({base['samples_per_s']:.0f} samples/s)")
    hit = next((t for t, m in ours["curve"] if m <= base["best_val_mae"]), None)
    ratio = base["wall_s"] / hit if hit else None
    naive_hit = next(t for t, m in base["curve"] if m <= base["best_val_mae"])  # when the naive loop got there
    if hit:
        print(f"time-to-accuracy: the project reaches the naive loop's best ({base['best_val_mae']:.4f}) after "
              f"{hit} s (naive: {naive_hit} s) -> {ratio:.1f}x faster than the naive budget, "
              f"{naive_hit / hit:.1f}x than the naive loop's own time")
    else:
        print("project never reached the naive loop's best")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} threads"
    out = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, {where}",
           "torch": torch.__version__, "device": str(device), "naive_time_to_best_s": naive_hit,
           "date": time.strftime("%Y-%m-%d"), "budget_s": args.budget, "throughput_samples_per_s": speed,
           "throughput_eager_samples_per_s": eager,
           "project": ours, "naive": base, "project_time_to_naive_best_s": hit, "time_to_accuracy_ratio": ratio}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
