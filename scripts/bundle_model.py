"""Copy a finished pretrain run into the package as a bundled model, with its model card.

Usage: python scripts/bundle_model.py RUN_DIR elemnet_tl/pretrained/NAME [TARGET_NAME UNIT]
       (TARGET_NAME and UNIT default to "formation energy" and "eV/atom" when the run's card has no unit)
Checks that the run loads (architecture, element list, finite weights) and is ≤ 25 MB. When the run
continued another model (`pretrain --init`), the card also gets the test MAE on the test compositions
that the first stage's data never contained (`test_mae_unseen`), so the held-out figure stays honest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MAX_BYTES = 25 * 1024 * 1024


def unseen_test_mae(card: dict, loaded) -> dict | None:
    """Test MAE on the test compositions absent from the data of the ``--init`` model's run."""
    init = card.get("init_model")
    if not init:
        return None
    import numpy as np
    import torch

    from elemnet_tl.compositions import composition_keys
    from elemnet_tl.featurize import load_and_prepare
    from elemnet_tl.training import predict_tensor
    from elemnet_tl.workflow import load_training_inputs

    first_card = json.loads((Path(init["path"]).parent / "card.json").read_text())
    first = load_and_prepare(first_card["data"]["train"]["path"], duplicates="most-stable")
    train = card["data"]["train"]
    # every composition, the test hold-out included (older cards stored "kept" after the hold-out)
    compositions = train["read"] - train["rejected"] - train["merged"]
    inputs = load_training_inputs(train["path"], test_fraction=card["split"]["n_test"] / compositions,
                                  seed=card["seed"], duplicates=train["duplicates"])
    test = inputs.test
    keys = composition_keys(np.vstack([first.fractions, test.fractions]))
    seen = np.isin(keys[len(first.fractions):], keys[:len(first.fractions)])
    pred = predict_tensor(loaded.model, torch.as_tensor(test.fractions, dtype=torch.float32)).numpy()
    pred = pred * loaded.info.target_std + loaded.info.target_mean
    err = np.abs(pred - test.target)
    if not np.isclose(err.mean(), card["metrics"]["test_mae"], rtol=1e-4):
        raise SystemExit(f"could not rebuild the test split of {card['command']!r}")
    return {"first_stage_data": first_card["data"]["train"]["source"], "first_stage_val_mae":
            first_card["metrics"]["val_mae"], "test_in_first_stage": int(seen.sum()), "test_unseen": int((~seen).sum()),
            "test_mae_all": float(err.mean()), "test_mae_unseen": float(err[~seen].mean())}


def inputs_line(card: dict) -> str:
    """What the network reads, in words."""
    if card["model"].get("inputs", "element fractions") == "element fractions":
        return "86 element fractions in ElemNet's order"
    return ("86 element fractions in ElemNet's order, and the 149 Magpie physical attributes computed from them\n"
            "  (standardized with the training rows' statistics, stored with the weights) through a linear map\n"
            "  onto the first hidden layer (`elemtl pretrain --pa`)")


def model_card(card: dict, name: str = "formation-energy") -> str:
    m, t, tr, data = card["metrics"], card["target"], card["training"], card["data"]
    train = data["train"]
    stage = card.get("first_stage")
    first = "" if not stage else f"""* First stage: pretrained on {stage['first_stage_data']} (validation MAE
  {stage['first_stage_val_mae']:.4f} there), then continued on the data below (`pretrain --init`).
  {stage['test_in_first_stage']} of the test compositions also occur in the first stage's data (with that
  set's own values); on the other {stage['test_unseen']} the test MAE is {stage['test_mae_unseen']:.4f}.
"""
    return f"""# Bundled model: ElemNet pretrained on {t['name']}

{first}* Architecture: ElemNet {card['model']['arch']} (+ output layer), ReLU, dropout {card['model']['dropout']},
  {card['model']['parameters']:,} parameters; input: {inputs_line(card)}.
* Training data: {train.get('source')} (sha256 {str(train.get('sha256'))[:12]}…): {train.get('read')} rows,
  {train.get('rejected')} rejected, {train.get('merged')} merged
  ({train.get('duplicates')}: {train.get('duplicates_reason')}),
  {train.get('read') - train.get('rejected') - train.get('merged')} compositions;
  test: {data.get('test', {}).get('source', 'none')} ({card['split']['n_test']} compositions, never trained on).
* Split: {card['split']['n_train']} training, {card['split']['n_val']} validation (early stopping),
  {card['split']['n_test']} test compositions.
* Recipe: AdamW lr {tr['lr']} (warm-up {tr['warmup']}, cosine to {tr['final_lr']}x), weight decay {tr['weight_decay']},
  batch {tr['batch_size']}, L1 loss on the standardized target,
  {tr['epochs_run']} epochs (best {tr['best_epoch']}),
  {tr['wall_seconds'] / 60:.1f} minutes on {card['device']}.
* Held-out test MAE: **{m['test_mae']:.4f} {t['unit']}**
  (RMSE {m['test_rmse']:.4f}, R² {m['test_r2']:.4f}); validation MAE {m['val_mae']:.4f}.
* Target scaler: mean {t['mean']:.4f}, std {t['std']:.4f} (stored in the safetensors metadata).
* Reproduce: `bash scripts/train_bundled_model.sh {name}` (command: `{card['command']}`).
* Data license: Materials Project via matbench v0.1, CC BY 4.0{'; OQMD, CC BY 4.0' if stage else ''}.
"""


def main() -> int:
    run, dest = Path(sys.argv[1]), Path(sys.argv[2])
    target_name, unit = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("formation energy", "eV/atom")
    from dataclasses import replace

    from elemnet_tl.checkpoint import CARD_FILE, MODEL_FILE, load_model, save_model

    loaded = load_model(run)  # raises on any inconsistency
    size = (run / MODEL_FILE).stat().st_size
    if size > MAX_BYTES:
        print(f"{run / MODEL_FILE}: {size / 1e6:.1f} MB is over the 25 MB limit")
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    card = json.loads((run / CARD_FILE).read_text())
    stage = unseen_test_mae(card, loaded)
    if stage:
        card["first_stage"] = stage
        print(json.dumps(stage))
    if not card["target"].get("unit"):
        card["target"]["unit"] = unit
        card["target"]["name"] = target_name
    info = replace(loaded.info, target=card["target"]["name"], unit=card["target"]["unit"])
    save_model(dest / MODEL_FILE, loaded.model, info)
    from elemnet_tl.datasets import sha256_of

    card["model"]["sha256"] = sha256_of(dest / MODEL_FILE)  # the target's name and unit changed the file
    (dest / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    load_model(dest)  # the bundled model loads as a user's installation will
    from elemnet_tl.checkpoint import BUNDLED_MODELS

    name = {folder: key for key, folder in BUNDLED_MODELS.items()}.get(dest.name, dest.name)
    (dest / "README.md").write_text(model_card(card, name))
    print(f"bundled {run} -> {dest} ({size / 1e6:.1f} MB); test MAE {card['metrics']['test_mae']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
