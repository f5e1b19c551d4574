"""An Optuna trial pruned through gpunn's callback seam (gpunn/training/callbacks.py).

`gpunn.train(val_size=..., callbacks=[PruneTrial(trial)])` reports each epoch's validation loss to the
trial (its step is the epoch) and raises optuna.TrialPruned when the study's pruner says this trial is
worse than the others were at that epoch. The epoch is saved before on_epoch_end runs, so a pruned
trial's run folder keeps every epoch it finished. Only the validation loss is reported: the test set never
chooses anything.
"""

from __future__ import annotations

from gpunn.training.config import ConfigError


class PruneTrial:
    """Report val_loss per epoch to an Optuna trial; raise TrialPruned when its pruner says so."""

    def __init__(self, trial):
        self.trial = trial
        self.pruned_at: int | None = None  # the epoch after which the trial was pruned
        self.epochs = 0  # epochs reported (each saved before it was)

    def on_train_begin(self, run) -> None:
        if not run.config.val_size:
            raise ConfigError("pruning watches the validation loss: train with val_size= (--val-size)")

    def on_epoch_end(self, record: dict) -> None:
        import optuna

        epoch, loss = record["epoch"], record["val_loss"]
        self.trial.report(loss, step=epoch)
        self.epochs = epoch
        if self.trial.should_prune():
            self.pruned_at = epoch
            raise optuna.TrialPruned(f"after epoch {epoch} (validation loss {loss:.4f})")
