"""What training tells the user: plain lines on stdout, a tqdm bar per epoch on stderr when it is a terminal."""

from __future__ import annotations

import sys

from gpunn.output import quiet_stdout


class Reporter:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()

    def line(self, text: str) -> None:
        """Print a progress line; a closed stdout (`| head`) ends the printing, never the training."""
        if not self.enabled:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            self.enabled = False
            quiet_stdout()
            print("gpunn: stdout was closed; training goes on without progress lines", file=sys.stderr)

    def bar(self, total: int, initial: int, epoch: int, epochs: int):
        if not self.tty:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False)

    def epoch(self, record: dict, epochs: int) -> None:
        validation = (
            f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.2%}  "
            if "val_loss" in record
            else ""
        )
        self.line(
            f"epoch {record['epoch']:>3}/{epochs}  loss {record['loss']:.4f}  train {record['train_accuracy']:.2%}  "
            f"{validation}test {record['test_accuracy']:.2%}  lr {record['lr']:.3g}  {record['seconds']:.2f} s  "
            f"{record['samples_per_second']:,.0f} samples/s"
        )

    def summary(
        self, history: list[dict], best_epoch: int, n_params: int, samples: int, train_seconds: float, store
    ):
        """The run's last line: epochs, time, test accuracy, the best epoch and the compute spent."""
        flops = 6 * n_params * samples
        best = ""
        if best_epoch:
            chosen = history[best_epoch - 1]
            best = (
                f"; best validation loss at epoch {best_epoch} (val {chosen['val_accuracy']:.2%}, "
                f"test {chosen['test_accuracy']:.2%}) saved as {store.best}"
            )
        self.line(
            f"done: {len(history)} epochs, {train_seconds:.1f} s of training; test accuracy "
            f"{history[-1]['test_accuracy']:.2%}{best}; training compute 6*N*D = 6 x {n_params:,} x {samples:,} = "
            f"{flops:.3g} FLOP, {flops / max(train_seconds, 1e-9) / 1e9:.1f} GFLOP/s; saved {store.checkpoint}"
        )
