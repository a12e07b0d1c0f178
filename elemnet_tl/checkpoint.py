"""Self-describing checkpoints: safetensors weights (no pickle) whose metadata holds the architecture,
the element list and the target scaler; plus the resumable training state of a run."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from .attributes import complete_state
from .datasets import sha256_of
from .elements import ELEMENTS
from .errors import InputError
from .io import atomic_path
from .model import ElemNet, ElemNetEnsemble
from .training import EpochLog, TrainState

MODEL_FILE = "model.safetensors"
CARD_FILE = "card.json"
STATE_FILE = "train_state.safetensors"
FORMAT = "elemnet_tl/1"

BUNDLED_DIR = Path(__file__).resolve().parent / "pretrained"
BUNDLED_MODELS = {"formation-energy": "mp_eform", "band-gap": "mp_gap"}
"""``--from bundled`` (= ``bundled:formation-energy``) and other bundled sources, by name."""


def bundled_models() -> list[dict]:
    """Name, target, unit and held-out test MAE (from its card) of every bundled model."""
    out = []
    for name, folder in BUNDLED_MODELS.items():
        card_path = BUNDLED_DIR / folder / CARD_FILE
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        target = card.get("target", {})
        out.append({"name": name, "target": target.get("name", "?"), "unit": target.get("unit", ""),
                    "test_mae": card.get("metrics", {}).get("test_mae")})
    return out


FRACTIONS = "element fractions"
FRACTIONS_AND_ATTRIBUTES = "element fractions + Magpie attributes"
"""What a network reads (ModelInfo.inputs): the attributes are computed from the fractions."""


def input_kind(model: ElemNet | ElemNetEnsemble) -> str:
    """:data:`FRACTIONS` or :data:`FRACTIONS_AND_ATTRIBUTES`."""
    return FRACTIONS if model.attributes is None else FRACTIONS_AND_ATTRIBUTES


@dataclass
class ModelInfo:
    """What a checkpoint says about its model."""

    arch: str
    dropout: float
    target_mean: float
    target_std: float
    target: str = "target"
    unit: str = ""
    inputs: str = FRACTIONS
    members: int = 1
    """> 1: an :class:`~elemnet_tl.model.ElemNetEnsemble` of that many ElemNets."""

    def to_metadata(self) -> dict[str, str]:
        meta = {"format": FORMAT, "arch": self.arch, "dropout": repr(self.dropout),
                "target_mean": repr(self.target_mean), "target_std": repr(self.target_std),
                "target": self.target, "unit": self.unit, "inputs": self.inputs,
                "elements": " ".join(ELEMENTS), "members": str(self.members)}
        return meta


@dataclass
class LoadedModel:
    """A model ready to predict: network, scaler and card."""

    model: ElemNet | ElemNetEnsemble
    info: ModelInfo
    card: dict
    path: Path

    def predict(self, fractions: torch.Tensor) -> torch.Tensor:
        """Predictions in target units, float64 (a target offset by 1e9 keeps its digits)."""
        from .training import predict_tensor

        return predict_tensor(self.model, fractions).double() * self.info.target_std + self.info.target_mean

    def predict_with_spread(self, fractions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An ensemble's predictions and the standard deviation of its members' predictions per row (target
        units), from one pass in float32 (also on a GPU, where a small spread would drown in bf16 rounding;
        on the CPU the predictions equal :meth:`predict`'s)."""
        from .training import predict_tensor

        if not isinstance(self.model, ElemNetEnsemble):
            raise ValueError("one network has no spread")
        outputs = predict_tensor(_MemberOutputs(self.model), fractions, exact=True).T.contiguous()  # (members, rows)
        std = self.info.target_std  # the mean over members as the ensemble's forward takes it: the same bits
        return (outputs.mean(dim=0).double() * std + self.info.target_mean,
                outputs.double().std(dim=0, unbiased=False) * std)


class _MemberOutputs(torch.nn.Module):
    """An ensemble's member outputs as (rows, members), so that :func:`predict_tensor` can batch rows."""

    def __init__(self, ensemble: ElemNetEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble.member_outputs(x).T


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def resolve_model_path(source: str | Path) -> Path:
    """``bundled``, ``bundled:NAME``, a run directory or a ``.safetensors`` file -> the weights file."""
    text = str(source)
    if text == "bundled" or text.startswith("bundled:"):
        name = text.partition(":")[2] or "formation-energy"
        if name not in BUNDLED_MODELS:
            raise InputError(f"--from {text}: no bundled model {name!r}; bundled: {', '.join(BUNDLED_MODELS)}")
        path = BUNDLED_DIR / BUNDLED_MODELS[name] / MODEL_FILE
        if not path.is_file():
            raise InputError(f"bundled model {name!r} is missing from the installation ({path})")
        return path
    path = Path(text)
    if path.is_dir():
        from .feature_runs import is_feature_run

        if is_feature_run(path) and not (path / MODEL_FILE).is_file():
            raise InputError(f"{text}: an extract-features directory (features and a regressor, no network to start "
                             "from): give a pretrain or finetune run directory, or 'bundled'")
        path = path / MODEL_FILE
    if not path.is_file():
        inside = _models_below(Path(text)) if Path(text).is_dir() else []
        hint = (f"; runs below it: {', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''}" if inside else "")
        raise InputError(f"{text}: no model here (expected a run directory with {MODEL_FILE}, or 'bundled'){hint}")
    if not path.name.lower().endswith(".safetensors"):  # a card, a regressor.json...: the folder was meant
        raise InputError(f"{text}: not a model file (expected a run directory, 'bundled', or a .safetensors file; "
                         f"for a file inside a run, give its folder {path.parent})")
    return path


def _models_below(folder: Path, depth: int = 4, most: int = 2000) -> list[str]:
    """Run directories (holding a model or a card) up to ``depth`` levels below ``folder`` (a compare-scratch
    folder's runs are four down), looking into at most ``most`` folders; sorted."""
    found: list[str] = []
    level, seen = [folder], 0
    for _ in range(depth):
        below = []
        for d in level:
            try:
                below += sorted(p for p in d.iterdir() if p.is_dir())
            except OSError:
                continue
        seen += len(below)
        if seen > most:
            break
        found += [str(p) for p in below if (p / MODEL_FILE).is_file() or (p / CARD_FILE).is_file()]
        level = below
    return sorted(found)


def load_start_network(source: str | Path) -> tuple[ElemNet, LoadedModel, dict]:
    """The network to start training from (the first member of an ensemble), the loaded checkpoint, and
    the card record naming it (source, file, target, the source run's metrics)."""
    loaded = load_model(source)
    model = loaded.model.first if isinstance(loaded.model, ElemNetEnsemble) else loaded.model
    record = {"source": str(source), "path": str(loaded.path), "target": loaded.info.target,
              "card_metrics": loaded.card.get("metrics")}
    return model, loaded, record


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically, its JSON header with sorted keys: the same tensors and metadata
    give the same bytes (safetensors itself writes the metadata in a random order)."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.dumps(json.loads(raw[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data must start 8-byte aligned
    with atomic_path(path) as tmp:
        tmp.write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + size:])


def save_model(path: str | Path, model: ElemNet, info: ModelInfo) -> None:
    """Write weights + metadata atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    write_safetensors(path, tensors, info.to_metadata())


def read_weights(path: Path, fmt: str, what: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file of format ``fmt`` over ElemNet's 86 elements.

    Raises :class:`InputError` (one line) on a corrupted file, another format (not ``what``) or other elements.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types on corrupted files
        raise InputError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if meta.get("format") != fmt:
        raise InputError(f"{path}: not {what} (metadata format {meta.get('format')!r})")
    if meta.get("elements", "").split() != list(ELEMENTS):
        raise InputError(f"{path}: the network's input elements differ from ElemNet's 86 elements")
    return meta, tensors


def load_model(source: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint; checks format, element list, architecture, keys and shapes.

    Raises :class:`InputError` (one line) on a corrupted file or a mismatch.
    """
    path = resolve_model_path(source)
    meta, tensors = read_weights(path, FORMAT, "an elemnet_tl model")
    try:
        info = ModelInfo(arch=meta["arch"], dropout=float(meta["dropout"]), target_mean=float(meta["target_mean"]),
                         target_std=float(meta["target_std"]), target=meta.get("target", "target"),
                         unit=meta.get("unit", ""), inputs=meta.get("inputs", FRACTIONS),
                         members=int(meta.get("members", "1")))
        if info.inputs not in (FRACTIONS, FRACTIONS_AND_ATTRIBUTES):
            raise ValueError(f"unknown inputs {info.inputs!r}")
        attributes = info.inputs == FRACTIONS_AND_ATTRIBUTES
        nets = [ElemNet(info.arch, dropout=info.dropout, attributes=attributes) for _ in range(info.members)]
        model = ElemNetEnsemble(nets) if info.members > 1 else nets[0]
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path}: bad model metadata: {exc}") from None
    tensors = complete_state(tensors, model.state_dict())
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise InputError(f"{path}: weights do not match architecture {info.arch!r} (first differences: {diff})")
    if not all(torch.isfinite(v).all() for v in tensors.values()):
        raise InputError(f"{path}: weights contain NaN or infinite values")
    model.load_state_dict(tensors)
    model.to(device)
    card_path = path.parent / CARD_FILE
    card: dict = {}
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{card_path}: corrupted card ({exc})") from None
        card_arch = card.get("model", {}).get("arch")
        if card_arch is not None and card_arch != info.arch:
            raise InputError(f"{path}: card says architecture {card_arch!r} but weights are {info.arch!r}")
        recorded = card.get("model", {}).get("sha256")  # cards written since 2026-12-02
        if recorded is not None and recorded != sha256_of(path):
            raise InputError(f"{path}: the weights differ from what {CARD_FILE} records (sha256 {recorded[:12]}...): "
                             "the file was changed or damaged; restore it or train again")
    return LoadedModel(model, info, card, path)


def save_state(path: str | Path, state: TrainState) -> None:
    """Write a resumable training state (weights, best weights, optimizer, RNG, history) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in state.model.items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in state.best_model.items():
        tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    for k, v in state.ema.items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    opt_scalars: dict = {}
    for pid, pstate in state.optimizer.get("state", {}).items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                opt_scalars[f"{pid}.{key}"] = value
    if state.rng is not None:
        tensors["rng"] = state.rng.cpu().contiguous()
    meta = {
        "epoch": state.epoch, "best_val": state.best_val if math.isfinite(state.best_val) else None,
        "best_epoch": state.best_epoch, "seconds": state.seconds, "done": state.done,
        "history": [vars(h) for h in state.history],
        "param_groups": state.optimizer.get("param_groups", []), "opt_scalars": opt_scalars,
    }
    write_safetensors(path, tensors, {"state": json.dumps(meta)})


def load_state(path: str | Path) -> TrainState:
    """Read what :func:`save_state` wrote."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # corrupted or foreign file
        raise InputError(f"{path}: cannot resume from this training state ({_first_line(exc)})") from None
    opt_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    for key, value in meta["opt_scalars"].items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = value
    best_val = meta["best_val"]
    return TrainState(
        epoch=meta["epoch"],
        model={k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
        best_model={k[5:]: v for k, v in tensors.items() if k.startswith("best.")},
        ema={k[4:]: v for k, v in tensors.items() if k.startswith("ema.")},
        optimizer={"state": opt_state, "param_groups": meta["param_groups"]},
        rng=tensors.get("rng"),
        best_val=math.inf if best_val is None else best_val,
        best_epoch=meta["best_epoch"],
        history=[EpochLog(**h) for h in meta["history"]],
        seconds=meta["seconds"],
        done=meta["done"],
    )
