"""What `gpunn tune` was asked, checked from its arguments before any folder or storage is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpunn.cli.tune_space import SearchSpace
from gpunn.cli.tune_storage import StorageSpec, optuna_module
from gpunn.errors import ConfigError, flag_name

DEFAULT_STUDY = "tune"
VAL_FRACTION, VAL_CAP = 0.1, 5000  # scikit-learn's validation_fraction; the README's MNIST split


def default_val_size(train_images: int) -> int:
    return min(VAL_CAP, int(train_images * VAL_FRACTION))


@dataclass
class TuneRequest:
    """Everything `gpunn tune` was asked, checked."""

    out: Path | None
    storage: StorageSpec | None  # None: OUT/study.db
    study: str
    trials: int
    timeout: float | None
    space: SearchSpace
    common: dict  # device, dtype, data_dir, recipe: passed to every trial as given
    seed: int
    val_note: str  # how the validation split was chosen, for the start line
    words: list = field(default_factory=list)  # the command as given, without --out


def check_numbers(trials, timeout) -> None:
    if not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials must be an integer >= 1 (the study's total), got {trials!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a number of seconds > 0, got {timeout!r}")


def check_study_name(study: str | None, storage: StorageSpec | None) -> str:
    if study is None:
        if storage is not None:
            raise ConfigError("--storage holds many studies: name this one with --study NAME")
        return DEFAULT_STUDY
    if not study.strip():
        raise ConfigError("--study takes a name, got an empty string")
    return study


def setup_of(request: TuneRequest) -> dict:
    """What every process of one study must share (stored in the study and in tune.json)."""
    fixed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in request.space.fixed.items()}
    fixed["dataset"] = Path(str(fixed["dataset"])).name  # a data folder may be mounted elsewhere
    return {"fixed": fixed, "space": request.space.to_dict(), "recipe": request.common.get("recipe")}


FIXED = ("dataset", "epochs", "seed", "val_size", "early_stopping")  # the same for every trial
COMMON = ("device", "dtype", "data_dir", "recipe")  # passed to gpunn.train as given
OWN_FLAGS = ("trials", "timeout", "storage", "study")


def request_from_args(args, train_keys) -> TuneRequest:
    """The checked TuneRequest from `gpunn tune`'s arguments; nothing is made before every check passed.

    `train_keys`: the training settings the parser has (gpunn/cli/main.py's TRAIN_FLAGS)."""
    from gpunn.cli.sweep import check_configs_against_data
    from gpunn.cli.tune_folder import check_folder
    from gpunn.cli.tune_space import SEARCHABLE, check_space, search_space
    from gpunn.cli.tune_storage import parse_storage
    from gpunn.data import load_dataset
    from gpunn.training.config import TrainConfig
    from gpunn.training.run import _check_device_settings

    optuna_module()  # the missing extra is the first thing said
    check_numbers(args.trials, args.timeout)
    storage = None if args.storage is None else parse_storage(args.storage)
    study = check_study_name(args.study, storage)
    _check_device_settings(args.device, args.dtype)
    given_fixed = {k: getattr(args, k) for k in FIXED if getattr(args, k) is not None}
    base = TrainConfig.from_recipe(args.recipe or "default", **given_fixed)
    fixed = {"dataset": base.dataset, "epochs": base.epochs, "seed": base.seed}
    if args.early_stopping is not None:
        fixed["early_stopping"] = base.early_stopping
    if args.val_size == 0:
        raise ConfigError(
            "--val-size 0 leaves no validation set, which tune ranks and prunes its trials on: give N > 0, "
            f"or leave it out ({VAL_FRACTION:.0%} of the training set, at most {VAL_CAP})"
        )
    if args.val_size is None:
        train_images = len(load_dataset(base.dataset, "train", data_dir=args.data_dir))
        fixed["val_size"] = default_val_size(train_images)
        note = (
            f"{VAL_FRACTION:.0%} of {train_images} training images, at most {VAL_CAP}: --val-size to choose"
        )
    else:
        fixed["val_size"], note = base.val_size, "--val-size"
    searched = {k: getattr(args, k) for k in SEARCHABLE if k in train_keys}
    space = search_space(searched, fixed, args.recipe)
    check_configs_against_data(check_space(space, args.recipe), args.data_dir)
    common = {k: getattr(args, k) for k in COMMON}
    out = None if args.out is None else Path(args.out)
    check_folder(out, storage, study)
    words = ["gpunn", "tune"]
    for key in (*train_keys, *OWN_FLAGS, *COMMON):
        if getattr(args, key, None) is not None:
            words += [flag_name(key), str(getattr(args, key))]
    return TuneRequest(out, storage, study, args.trials, args.timeout, space, common, base.seed, note, words)
