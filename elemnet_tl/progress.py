"""A rich progress bar for training: epoch, train loss, validation MAE and ETA."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .training import EpochLog, TrainState

console = Console(stderr=True)
"""Where progress and messages go (stderr: stdout stays free for results)."""


@contextlib.contextmanager
def epoch_bar(description: str, total_epochs: int, show: bool = True,
              unit: str = "") -> Iterator[Callable[[EpochLog, TrainState], None]]:
    """Yield an ``on_epoch`` callback that advances a progress bar (a no-op when ``show`` is False)."""
    if not show:
        yield lambda log, state: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total_epochs, info="")

        def on_epoch(log: EpochLog, state: TrainState) -> None:
            units = f" {unit}" if unit else ""
            info = f"val MAE {log.val_mae:.4g}{units} (best {state.best_val:.4g} @{state.best_epoch})"
            total = total_epochs if not state.done else state.epoch
            progress.update(task, completed=state.epoch, total=total, info=info)

        yield on_epoch
