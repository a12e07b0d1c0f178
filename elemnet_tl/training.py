"""One training loop for pretraining, fine-tuning and training from scratch.

Data stay on the device as tensors for the whole run; a batch is an index slice of a per-epoch
permutation (seeded by ``seed`` and the epoch, so a resumed run replays the same batches). Metrics
are accumulated on the device and read once per epoch. On CUDA the training step (forward, backward,
AdamW) is captured once as a CUDA graph and replayed, since ElemNet's ~150 small kernels per step
otherwise leave the GPU waiting on kernel launches. Nothing here touches files or globals: the
caller passes the device, the data (or its shard) and callbacks for logging and checkpoints.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import InputError, TrainingDiverged

MAX_SEED = 2**31 - 1
"""Largest ``--seed`` (numpy, torch and scikit-learn all take it, with the offsets the splits add)."""
SEED_RULE = f"between 0 and {MAX_SEED}"


MEMBER_SEED_STRIDE = 7919
"""Seeds of an ensemble's networks lie this far apart, so that runs with nearby seeds share none (``seed +
member`` made member 1 of seed 0 the first network of seed 1: repeats that were meant to be independent
shared their initialisations). The members' validation splits use the same offsets."""


def member_seed(seed: int, member: int) -> int:
    """The seed of an ensemble's ``member``-th network (0: ``seed`` itself), within the valid range."""
    return (seed + member * MEMBER_SEED_STRIDE) % (MAX_SEED + 1)


@dataclass
class FitConfig:
    """Options of :func:`fit` (the resolved values are written into every run's card)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    """Fraction of all steps spent warming the learning rate up linearly."""
    final_lr: float = 0.01
    """Learning rate at the last step, as a fraction of ``lr`` (cosine decay in between)."""
    patience: int = 30
    """Stop after this many epochs without a better validation MAE (0: never stop early)."""
    min_epochs: int = 0
    """Never stop early before this many epochs."""
    seed: int = 0
    loss: str = "l1"
    """``l1`` (MAE) or ``mse``."""
    ema_epochs: float = 0.0
    """Validate and keep an exponential moving average of the weights over about this many epochs
    (0: off). Smooths the noisy path of small-data fine-tuning."""

    def __post_init__(self) -> None:
        rules = [("epochs", self.epochs >= 0, ">= 0"), ("batch_size", self.batch_size >= 0, ">= 0"),
                 ("lr", self.lr >= 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                 ("warmup", 0 <= self.warmup < 1, "in [0, 1)"), ("final_lr", self.final_lr >= 0, ">= 0"),
                 ("patience", self.patience >= 0, ">= 0"), ("min_epochs", self.min_epochs >= 0, ">= 0"),
                 ("ema_epochs", self.ema_epochs >= 0, ">= 0"), ("seed", 0 <= self.seed <= MAX_SEED, SEED_RULE),
                 ("loss", self.loss in ("l1", "mse"), "l1 or mse")]
        for name, ok, rule in rules:
            if not ok:
                raise InputError(f"{_option(name)} must be {rule}, got {getattr(self, name)}")

    def check_resolved(self) -> None:
        """Raise unless epochs, batch size and learning rate are set (0 means "chosen from the data" until
        resolved)."""
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{_option(name)} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InputError(f"{_option('lr')} must be > 0, got {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)


def stops_early(epoch: int, best_epoch: int, config: FitConfig) -> bool:
    """Early stopping after ``epoch`` epochs: ``patience`` epochs without a better validation MAE, and
    at least ``min_epochs`` run."""
    return bool(config.patience) and epoch - best_epoch >= config.patience and epoch >= config.min_epochs


def _option(field_name: str) -> str:
    """The command-line option of a FitConfig field (``ema_epochs`` -> ``--ema``)."""
    return {"ema_epochs": "--ema"}.get(field_name, "--" + field_name.replace("_", "-"))


@dataclass
class EpochLog:
    """What one epoch did (validation MAE in target units)."""

    epoch: int
    train_loss: float
    val_mae: float
    lr: float
    seconds: float


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int = 0
    """Epochs completed."""
    model: dict = field(default_factory=dict)
    best_model: dict = field(default_factory=dict)
    ema: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    rng: torch.Tensor | None = None
    best_val: float = math.inf
    best_epoch: int = 0
    history: list[EpochLog] = field(default_factory=list)
    seconds: float = 0.0
    done: bool = False


@dataclass
class FitResult:
    best_epoch: int
    best_val_mae: float
    history: list[EpochLog]
    stopped_early: bool
    seconds: float


def lr_factor(step: int, total_steps: int, warmup: float, final_lr: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine decay to ``final_lr``."""
    warm = max(1, int(round(warmup * total_steps)))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return final_lr + (1.0 - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise InputError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(device)


def _autocast(device: torch.device):
    if device.type == "cuda":  # no weight-cast cache: a captured graph must recompute the casts
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_tensor(model: nn.Module, x: torch.Tensor, batch_size: int = 16384, exact: bool = False) -> torch.Tensor:
    """Model output for ``x`` (same device as the model), in eval mode, float32 (on a GPU computed in bf16
    unless ``exact``)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for start in range(0, len(x), batch_size):
        with _autocast(device) if not exact else torch.autocast(device.type, enabled=False):
            outs.append(model(x[start:start + batch_size].to(device)).float())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, device=device)


def make_optimizer(groups: list[dict], config: FitConfig, capturable: bool = False) -> torch.optim.Optimizer:
    """AdamW; the fused kernel where this torch has it (2-3x faster steps at small batches on CPU).

    ``capturable``: learning rates and step counts live on the device as tensors, so the step can be
    captured in a CUDA graph (set a group's rate with ``group["lr"].fill_(...)``).
    """
    if capturable:
        device = groups[0]["params"][0].device
        groups = [{**g, "lr": torch.tensor(float(g.get("lr", config.lr)), device=device)} for g in groups]
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True,
                                 capturable=True)
    try:
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with tensor learning rates as floats (JSON-safe, device-free)."""
    sd = optimizer.state_dict()
    sd["param_groups"] = [{k: (float(v) if k == "lr" and torch.is_tensor(v) else v) for k, v in g.items()}
                          for g in sd["param_groups"]]
    return sd


GRAPH_WARMUP_STEPS = 3
"""Eager steps (on a side stream) before the step is captured: they create the optimizer state and
let cuBLAS pick its kernels."""


class TrainStep:
    """One optimizer step on rows ``idx`` of the resident data, adding the loss to ``loss_sum``.

    ``graph=True`` (CUDA only; the optimizer must be capturable): after a few eager steps the step is
    captured as a CUDA graph and replayed from then on, one launch instead of ~150. Should the capture
    fail (an operation that cannot be captured), it warns and stays eager.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                 x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device, graph: bool = False) -> None:
        self.model, self.optimizer, self.loss_fn, self.x, self.y = model, optimizer, loss_fn, x, y
        self.device = device
        self.loss_sum = torch.zeros((), device=device)
        self.use_graph = graph and device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0
        if self.use_graph:
            self.static_idx = torch.zeros(batch, dtype=torch.long, device=device)
            self.stream = torch.cuda.Stream(device)

    def _step(self, idx: torch.Tensor) -> None:
        with _autocast(self.device):
            loss = self.loss_fn(self.model(self.x[idx]).float(), self.y[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum.add_(loss.detach())

    def set_lr(self, factor: float) -> None:
        for g in self.optimizer.param_groups:
            if torch.is_tensor(g["lr"]):
                g["lr"].fill_(g["base_lr"] * factor)
            else:
                g["lr"] = g["base_lr"] * factor

    def __call__(self, idx: torch.Tensor, factor: float) -> None:
        self.set_lr(factor)
        if not self.use_graph:
            self._step(idx)
            return
        self.static_idx.copy_(idx)
        if self.graph is None and self.eager_steps >= GRAPH_WARMUP_STEPS:
            self.graph = self._capture()
        if self.graph is not None:
            self.graph.replay()
            return
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            self._step(self.static_idx)
        main.wait_stream(self.stream)
        self.eager_steps += 1

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates its own gradients
        try:
            with torch.cuda.graph(graph):
                self._step(self.static_idx)
        except Exception as exc:  # noqa: BLE001 - any capture failure: fall back to eager steps
            warnings.warn(f"CUDA graph capture failed, training without it: {exc}", RuntimeWarning, stacklevel=2)
            self.use_graph = False
            torch.cuda.synchronize(self.device)
            return None
        return graph


def _clone_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    config: FitConfig,
    *,
    device: torch.device | str = "cpu",
    param_groups: list[dict] | None = None,
    y_scale: float = 1.0,
    state: TrainState | None = None,
    on_epoch: Callable[[EpochLog, TrainState], None] | None = None,
    cuda_graph: bool = True,
) -> FitResult:
    """Train ``model`` on standardized targets; keep the weights with the best validation MAE.

    ``param_groups``: optimizer groups (``{"params": [...], "lr_scale": s}``); default all trainable
    parameters at ``config.lr``. ``y_scale`` converts standardized errors to target units for
    reporting. ``state`` resumes a run; ``on_epoch(log, state)`` is called after every epoch with the
    full state (for progress bars, metrics files and resumable checkpoints). ``cuda_graph``: on CUDA,
    replay the step as a CUDA graph (same arithmetic, far fewer launches). On return the model holds
    the best weights.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    x_train, y_train = x_train.to(device), y_train.to(device).float()
    x_val, y_val = x_val.to(device), y_val.to(device).float()
    n = len(x_train)
    if n == 0:
        raise ValueError("no training rows")
    config.check_resolved()
    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
    groups = [{"params": g["params"], "lr": config.lr * g.get("lr_scale", 1.0),
               "base_lr": config.lr * g.get("lr_scale", 1.0)} for g in param_groups if g["params"]]
    graph = cuda_graph and device.type == "cuda"
    optimizer = make_optimizer(groups, config, capturable=graph)
    loss_fn = nn.L1Loss() if config.loss == "l1" else nn.MSELoss()
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)  # drop the ragged last batch: stable steps on tiny sets
    total_steps = steps_per_epoch * config.epochs

    state = state or TrainState()
    if state.epoch > 0:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        if graph:  # the saved rates are floats; a capturable optimizer keeps them as device tensors
            for g in optimizer.param_groups:
                g["lr"] = torch.tensor(float(g["lr"]), device=device)
        if state.rng is not None:
            torch.set_rng_state(state.rng)
    else:
        state.best_model = _clone_state(model)
    ema_model = None
    if config.ema_epochs > 0:
        ema_model = copy.deepcopy(model)
        if state.ema:
            ema_model.load_state_dict(state.ema)
        ema_decay = 1.0 - 1.0 / max(1.0, config.ema_epochs * steps_per_epoch)
        live = [p for p in model.parameters()]
        shadow = [p for p in ema_model.parameters()]
    scored = ema_model if ema_model is not None else model
    train_step = TrainStep(model, optimizer, loss_fn, x_train, y_train, batch, device, graph=graph)
    model.train()
    stopped_early = False
    start_time = time.perf_counter() - state.seconds
    for epoch in range(state.epoch, config.epochs):
        if state.done:
            break
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=gen).to(device)
        train_step.loss_sum.zero_()
        for i in range(steps_per_epoch):
            train_step(perm[i * batch:(i + 1) * batch],
                       lr_factor(epoch * steps_per_epoch + i, total_steps, config.warmup, config.final_lr))
            if ema_model is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(shadow, live, 1.0 - ema_decay)
        train_loss = float(train_step.loss_sum) / steps_per_epoch
        val_pred = predict_tensor(scored, x_val)
        val_mae = float((val_pred - y_val).abs().mean()) * y_scale if len(y_val) else train_loss
        if not (math.isfinite(train_loss) and math.isfinite(val_mae)):
            raise TrainingDiverged(f"training diverged at epoch {epoch + 1} (the loss became "
                                   f"{train_loss if not math.isfinite(train_loss) else val_mae}): "
                                   f"lower the learning rate (--lr, now {config.lr:g}); no model was saved")
        log = EpochLog(epoch + 1, train_loss, val_mae, float(optimizer.param_groups[0]["lr"]),
                       time.perf_counter() - t0)
        state.history.append(log)
        if val_mae < state.best_val:
            state.best_val, state.best_epoch = val_mae, epoch + 1
            state.best_model = _clone_state(scored)
        state.epoch = epoch + 1
        if stops_early(state.epoch, state.best_epoch, config):
            state.done = stopped_early = True
        if state.epoch >= config.epochs:
            state.done = True
        state.seconds = time.perf_counter() - start_time
        if on_epoch is not None:
            state.model = model.state_dict()
            state.ema = ema_model.state_dict() if ema_model is not None else {}
            state.optimizer = _portable_optimizer_state(optimizer)
            state.rng = torch.get_rng_state()
            on_epoch(log, state)
    model.load_state_dict(state.best_model)
    return FitResult(state.best_epoch, state.best_val, state.history, stopped_early,
                     time.perf_counter() - start_time)


def is_constant(values: np.ndarray) -> bool:
    """True when ``values`` do not vary beyond rounding: a spread of at most 1e-12 of their largest
    magnitude (relative, so that a target in units of 1e-20 still varies; empty or one value: constant)."""
    v = np.asarray(values, dtype=np.float64)
    return len(v) < 2 or not float(v.std()) > 1e-12 * float(np.abs(v).max())


def standardize(y: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation for the target scaler (std 1 for a constant target)."""
    y = np.asarray(y, dtype=np.float64)
    mean = float(y.mean()) if len(y) else 0.0
    return mean, (1.0 if is_constant(y) else float(y.std()))
