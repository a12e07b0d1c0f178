"""Sharpness-aware minimization (SAM) in the pretraining step: the bundled split and `--pa` recipe, each step
taking its gradient at the weights moved by RHO along the normalized gradient (docs/benchmarks.md, sixteenth
session: negative, not an option of the tool).

Usage: python scripts/probe_sam.py RUN_DIR [--rho 0.05] [--epochs 60] [--lr 1e-3]
Needs ../shared/data (skips with a message when absent); ~17 s per epoch on 2 CPU cores. Compare the run's
test_predictions.csv with the bundled model's (`elemtl predict RUN_DIR/test_predictions.csv --target-col target`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "source" / "matbench_mp_e_form.csv.gz"


def sam_step(rho: float):
    """A replacement for ``TrainStep._step``: the SAM update, the loss logged at the unperturbed weights."""

    def step(self, idx: torch.Tensor) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        x, y = self.x[idx], self.y[idx]
        loss = self.loss_fn(self.model(x).float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            grads = [p.grad for p in params]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            eps = [g * (rho / (norm + 1e-12)) for g in grads]
            torch._foreach_add_(params, eps)
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.model(x).float(), y).backward()
        with torch.no_grad():
            torch._foreach_sub_(params, eps)
        self.optimizer.step()
        self.loss_sum.add_(loss.detach())

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--rho", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} is absent")
        return 0
    from dataclasses import replace

    from elemnet_tl import training
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS, default_patience, pretrain

    training.TrainStep._step = sam_step(args.rho)
    config = replace(PRETRAIN_DEFAULTS, epochs=args.epochs, lr=args.lr, patience=default_patience(args.epochs))
    pretrain(DATA, args.run_dir, test_fraction=0.1, config=config, attributes=True, device="cpu",
             show_progress=False, notices=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
