"""A rich progress bar for training: epoch, train loss, validation MAE and ETA."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn

from .training import EpochLog, TrainState

console = Console(stderr=True)
"""Where progress and messages go (stderr: stdout stays free for results)."""

WIDE = 120
"""Terminal columns from which the label, the unit and the bar share one line; narrower terminals get
the label (with the unit) on a line of its own above a compact bar, so nothing is cut off at 80."""


def bar_columns(wide: bool) -> list[ProgressColumn]:
    """Label (wide only), bar, epoch m/n, the epoch's figures and the time left."""
    label = [TextColumn("[bold]{task.description}")] if wide else []
    return [*label, BarColumn(bar_width=16 if wide else 10), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TextColumn("ETA"), TimeRemainingColumn()]


def epoch_info(log: EpochLog, state: TrainState, unit: str, wide: bool) -> str:
    """Train loss (L1 on the standardized target), this epoch's validation MAE and the best so far."""
    if wide:
        units = f" {unit}" if unit else ""
        return (f"loss {log.train_loss:.3f}  val MAE {log.val_mae:.4g}{units} "
                f"(best {state.best_val:.4g} @{state.best_epoch})")
    return f"loss {log.train_loss:.3f} val {log.val_mae:.4g} best {state.best_val:.4g}@{state.best_epoch}"


@contextlib.contextmanager
def epoch_bar(description: str, total_epochs: int, show: bool = True,
              unit: str = "") -> Iterator[Callable[[EpochLog, TrainState], None]]:
    """Yield an ``on_epoch`` callback that advances a progress bar (a no-op when ``show`` is False)."""
    if not show:
        yield lambda log, state: None
        return
    wide = console.width >= WIDE
    if not wide:
        console.print(f"{description}: train loss, validation MAE{f' ({unit})' if unit else ''}",
                      highlight=False, markup=False, soft_wrap=True)
    progress = Progress(*bar_columns(wide), console=console, transient=False)
    with progress:
        task = progress.add_task(description, total=total_epochs, info="")

        def on_epoch(log: EpochLog, state: TrainState) -> None:
            total = total_epochs if not state.done else state.epoch
            progress.update(task, completed=state.epoch, total=total, info=epoch_info(log, state, unit, wide))

        yield on_epoch
