"""`gpunn plot TUNE_FOLDER`: the study's optimization history and parameter importances, as PNGs in it.

Drawn by Optuna's own matplotlib plots (optuna.visualization.matplotlib) from the study's storage. The
importances are fANOVA's (a random forest fitted to the completed trials, seeded so the picture is the
same each time); they need at least two completed trials whose settings differ.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from gpunn.cli.plot import pyplot, save_png
from gpunn.errors import GpunnError
from gpunn.outputs import check_output

HISTORY, IMPORTANCES = "history.png", "importances.png"
IMPORTANCE_SEED = 0


def write_study_pictures(folders, output=None, weights: bool = False, force: bool = False) -> list[str]:
    """history.png and importances.png in the tune folder; lines saying what was written (or why not)."""
    from gpunn.cli.tune_folder import load_study_of

    if len(folders) != 1:
        raise GpunnError("plot one tune folder at a time (its trial folders may be plotted together as runs)")
    if output is not None or weights:
        raise GpunnError(
            "a tune folder's pictures are history.png and importances.png in it: drop --output/--weights"
        )
    folder = Path(folders[0])
    pyplot()  # the missing-extra error before any work
    history_png = check_output(folder / HISTORY, force)
    importances_png = check_output(folder / IMPORTANCES, force)
    study = load_study_of(folder)
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise GpunnError(
            f"{folder}: no trial of study {study.study_name!r} has completed yet: nothing to draw"
        )
    lines = [save_png(history_figure(study), history_png, force=force)]
    figure, why_not = importances_figure(study, complete)
    lines.append(
        f"no {IMPORTANCES}: {why_not}" if figure is None else save_png(figure, importances_png, force=force)
    )
    return lines


@contextlib.contextmanager
def _optuna_plotting():
    """Optuna's plots set matplotlib's ggplot style for the whole process and warn that they are
    experimental: both kept inside this block."""
    import matplotlib

    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")
        yield


def history_figure(study):
    from optuna.visualization.matplotlib import plot_optimization_history

    with _optuna_plotting():
        axis = plot_optimization_history(study, target_name="validation loss")
    axis.set_ylabel("best validation loss of the trial")
    figure = axis.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    return figure


def importances_figure(study, complete) -> tuple[object | None, str]:
    """(the figure, "") or (None, why there is none)."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    varied = {name for name in complete[0].params if len({str(t.params.get(name)) for t in complete}) > 1}
    if len(complete) < 2 or not varied:
        return (
            None,
            f"it needs at least 2 completed trials with different settings ({len(complete)} completed)",
        )
    with _optuna_plotting():
        axis = plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=IMPORTANCE_SEED), target_name="validation loss"
        )
    figure = axis.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    return figure, ""
