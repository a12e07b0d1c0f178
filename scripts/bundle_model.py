"""Copy a finished pretrain run into the package as a bundled model, with its model card.

Usage: python scripts/bundle_model.py RUN_DIR elemnet_tl/pretrained/NAME
Checks that the run loads (architecture, element list, finite weights) and is ≤ 25 MB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MAX_BYTES = 25 * 1024 * 1024


def model_card(card: dict) -> str:
    m, t, tr, data = card["metrics"], card["target"], card["training"], card["data"]
    train = data["train"]
    return f"""# Bundled model: ElemNet pretrained on {t['name']}

* Architecture: ElemNet {card['model']['arch']} (+ output layer), ReLU, dropout {card['model']['dropout']},
  {card['model']['parameters']:,} parameters; input: 86 element fractions in ElemNet's order.
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
* Held-out test MAE: **{m['test_mae']:.4f} {t['unit'] or 'eV/atom'}**
  (RMSE {m['test_rmse']:.4f}, R² {m['test_r2']:.4f}); validation MAE {m['val_mae']:.4f}.
* Target scaler: mean {t['mean']:.4f}, std {t['std']:.4f} (stored in the safetensors metadata).
* Reproduce: `bash scripts/train_bundled_model.sh` (command: `{card['command']}`).
* Data license: Materials Project via matbench v0.1, CC BY 4.0.
"""


def main() -> int:
    run, dest = Path(sys.argv[1]), Path(sys.argv[2])
    from dataclasses import replace

    from elemnet_tl.checkpoint import CARD_FILE, MODEL_FILE, load_model, save_model

    loaded = load_model(run)  # raises on any inconsistency
    size = (run / MODEL_FILE).stat().st_size
    if size > MAX_BYTES:
        print(f"{run / MODEL_FILE}: {size / 1e6:.1f} MB is over the 25 MB limit")
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    card = json.loads((run / CARD_FILE).read_text())
    if not card["target"].get("unit"):
        card["target"]["unit"] = "eV/atom"
        card["target"]["name"] = "formation energy"
    info = replace(loaded.info, target=card["target"]["name"], unit=card["target"]["unit"])
    save_model(dest / MODEL_FILE, loaded.model, info)
    (dest / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (dest / "README.md").write_text(model_card(card))
    print(f"bundled {run} -> {dest} ({size / 1e6:.1f} MB); test MAE {card['metrics']['test_mae']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
