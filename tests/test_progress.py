"""The training progress bar: every figure the issue names, and nothing cut off at 80 columns."""

import io
import re

import pytest
from rich.console import Console

import elemnet_tl.progress as progress
from elemnet_tl.training import EpochLog, TrainState

LABEL = "finetune reinit+pa member 2/3 (cpu)"


def render(monkeypatch, width: int) -> list[str]:
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(width=width, force_terminal=True, file=out))
    with progress.epoch_bar(LABEL, 200, True, "eV/atom") as on_epoch:
        for epoch in range(1, 121):
            on_epoch(EpochLog(epoch, 0.31234, 0.05612, 1e-4, 0.1), TrainState(epoch=epoch, best_val=0.05571,
                                                                              best_epoch=113))
    redraws = re.split(r"\r|\n|\x1b\[2K", out.getvalue())  # each redraw of the live bar on its own
    return [re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", line) for line in redraws]


@pytest.mark.parametrize("width", [80, 140])
def test_bar_shows_epoch_loss_validation_and_eta_in_full(monkeypatch, width):
    lines = [line for line in render(monkeypatch, width) if line.strip()]
    assert all(len(line) <= width for line in lines), lines
    last = lines[-1]
    assert "120/200" in last and "loss 0.312" in last and "0.05612" in last and "@113" in last and "ETA" in last
    assert "…" not in "".join(lines)
    assert any(LABEL in line and "eV/atom" in line for line in lines)  # the label and the unit, whole
    assert (LABEL in last) == (width >= progress.WIDE)  # wide terminals: one line per training


def test_hidden_bar_is_a_no_op(monkeypatch):
    console = Console(width=80, force_terminal=True, record=True)
    monkeypatch.setattr(progress, "console", console)
    with progress.epoch_bar(LABEL, 10, False) as on_epoch:
        on_epoch(EpochLog(1, 0.5, 0.1, 1e-3, 0.1), TrainState(epoch=1))
    assert console.export_text() == ""
