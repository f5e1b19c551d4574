"""The `gpunn` command. Expected failures (GpunnError) print one line and exit non-zero, never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpunn.errors import GpunnError, cli_message, out_of_memory
from gpunn.output import describe_os_error, quiet_stdout

TRAIN_FLAGS = [
    # (flag, type, help); every default is None so the recipe fills what is not given
    ("--epochs", int, "passes over the training set"),
    ("--batch-size", int, "samples per SGD step"),
    ("--lr", float, "peak learning rate"),
    ("--optimizer", str, "the update rule"),
    ("--momentum", float, "momentum for momentum/nesterov"),
    ("--weight-decay", float, "L2 added to the gradient"),
    ("--schedule", str, "how the lr changes over training"),
    ("--hidden", str, "hidden sizes, e.g. 128,64 (any depth)"),
    ("--activation", str, "after each hidden layer"),
    ("--init", str, "weight initialisation"),
    ("--seed", int, "seed of the host RNG (weights and batch order)"),
    ("--dataset", str, "what to train on (or a folder holding the four IDX files)"),
    ("--val-size", int, "images held out of the training set, stratified, for validation (default 0: none)"),
    (
        "--early-stopping",
        int,
        "stop after this many epochs without a lower validation loss (needs --val-size)",
    ),
    ("--dropout", float, "inverted dropout probability after each hidden activation (default 0)"),
]


def _setting(flag: str) -> str:
    """'--batch-size' -> 'batch_size': the argparse dest and the TrainConfig field."""
    return flag[2:].replace("-", "_")


def _help_with_choices(key: str, text: str) -> str:
    """A flag's help, ending with the names its registry accepts (validation refuses any other)."""
    from gpunn.training.config import setting_choices

    names = setting_choices().get(key)
    return f"{text}: {' | '.join(names)}" if names else text


def _recipe_help() -> str:
    from gpunn.training.config import RECIPES

    return "; ".join(
        f"{name} ({r['optimizer']} lr {r['lr']:g}, batch {r['batch_size']}, {r['epochs']} epochs, "
        f"{r['schedule']} lr, {r['init']} init)"
        for name, r in RECIPES.items()
    )


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line and exit 2, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _cmd_info(args: argparse.Namespace) -> int:
    from gpunn.cli.info import info_lines

    print("\n".join(info_lines()))
    return 0


def _train_settings(args: argparse.Namespace) -> dict:
    from gpunn.training.config import parse_hidden

    settings = {_setting(flag): getattr(args, _setting(flag)) for flag, _, _ in TRAIN_FLAGS}
    if settings["hidden"] is not None:
        settings["hidden"] = parse_hidden(settings["hidden"])
    return settings


def _cmd_train(args: argparse.Namespace) -> int:
    from gpunn.cli.tracking import tracking_from_args
    from gpunn.training.run import train

    tracking = tracking_from_args(args)
    train(
        out=args.out,
        resume=args.resume,
        device=args.device,
        dtype=args.dtype,
        data_dir=args.data_dir,
        recipe=args.recipe,
        verbose=not args.quiet,
        distributed=args.distributed,
        stall_check=not args.no_stall_check,
        callbacks=tracking.callbacks(),
        **_train_settings(args),
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from gpunn.checkpoint import classifier_from_checkpoint, load_checkpoint, trained_on
    from gpunn.data import load_dataset, provenance
    from gpunn.data.sources import DATASET_NAMES
    from gpunn.errors import CheckpointError
    from gpunn.training.evaluate import evaluate

    if args.plot:  # where the pictures go is checked before any work
        from gpunn.cli.pictures import evaluation_pictures, write_evaluation_pictures

        evaluation_pictures(args.checkpoint, args.force)
    checkpoint = load_checkpoint(args.checkpoint)
    dataset_name, data_dir = args.dataset or trained_on(checkpoint), args.data_dir
    if dataset_name is None:
        raise CheckpointError(
            f"{args.checkpoint} holds weights only and does not say what they were trained on (a model built "
            f"by hand, or saved by an older gpunn): name the test data with --dataset "
            f"({', '.join(DATASET_NAMES)} or a folder of IDX files)"
        )
    if dataset_name == trained_on(checkpoint):  # the run's own data: from where it recorded, or --data-dir
        recorded = checkpoint.header.get("data")
        dataset_name, data_dir = provenance.where_to_load(dataset_name, recorded, data_dir, args.checkpoint)
    data = load_dataset(dataset_name, "test", data_dir=data_dir)
    model = classifier_from_checkpoint(checkpoint, args.checkpoint, args.device)
    if model.in_features != data.features.shape[1]:
        raise CheckpointError(
            f"{args.checkpoint}: the model takes {model.in_features} inputs but {dataset_name} "
            f"images have {data.features.shape[1]} pixels"
        )
    if model.out_features != data.n_classes:
        raise CheckpointError(
            f"{args.checkpoint}: the model has {model.out_features} outputs but {dataset_name} has "
            f"{data.n_classes} classes"
        )
    print(f"{dataset_name} test set, model from {args.checkpoint}, device {model.backend.device}")
    evaluation = evaluate(model, data.features, data.labels, data.n_classes)
    print("\n".join(evaluation.lines(data.class_names)))
    if args.plot:
        pictures = write_evaluation_pictures(model, data, evaluation.confusion, args.checkpoint, args.force)
        print("\n".join(pictures))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from gpunn.cli.predict_inputs import load_predictor, read_inputs, top_classes

    model, names = load_predictor(args.checkpoint, args.device)
    if not 1 <= args.top <= len(names):
        raise GpunnError(f"--top must be between 1 and {len(names)} (the number of classes), got {args.top}")
    inputs = [
        (path, read_inputs(path, model.in_features, args.invert)) for path in args.files
    ]  # checked first
    for path, rows in inputs:
        probabilities = model.predict_proba(rows)
        for index, row in enumerate(probabilities):
            label = f"{path}[{index}]" if len(rows) > 1 else str(path)
            print(f"{label}: " + ", ".join(text for _, _, text in top_classes(row, names, args.top)))
    return 0


def _grid_value(flag: str, kind, text: str):
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise GpunnError(f"{flag} takes a comma-separated list of {what}, got {text!r}") from None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from gpunn.cli.sweep import run_sweep
    from gpunn.cli.tracking import tracking_from_args

    grid = {}
    for flag, kind, _ in TRAIN_FLAGS:
        key = _setting(flag)
        value = getattr(args, key)
        if value is not None:
            separator = "/" if key == "hidden" else ","
            grid[key] = [_grid_value(flag, kind, v) for v in str(value).split(separator)]
    rows = run_sweep(
        grid,
        Path(args.out) if args.out else None,
        device=args.device,
        dtype=args.dtype,
        data_dir=args.data_dir,
        recipe=args.recipe,
        jobs=args.jobs,
        index=args.index,
        tracking=tracking_from_args(args),
    )
    failed = [row for row in rows if row.failure is not None]
    if failed:  # every other combination ran and is in the table; the exit status still says it
        print(f"gpunn: {len(failed)} of {len(rows)} combination(s) failed (see the table)", file=sys.stderr)
        return 1
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from gpunn.cli.tracking import tracking_from_args
    from gpunn.cli.tune import run_tune
    from gpunn.cli.tune_request import request_from_args

    request = request_from_args(args, [_setting(flag) for flag, _, _ in TRAIN_FLAGS])
    tracking = tracking_from_args(args)  # a missing extra fails here, before the tune folder is made
    # one run per trial: TensorBoard events in DIR/<study>/trial-NNNN, MLflow runs tagged with the study
    best = run_tune(request, trial_callbacks=lambda study, folder: tracking.callbacks(group=study))
    return 0 if best is not None else 1  # no trial completed (each failed setting said why)


def _cmd_export(args: argparse.Namespace) -> int:
    from gpunn.cli.export_onnx import export_onnx

    path, contract = export_onnx(args.checkpoint, args.onnx, args.input_dtype, args.input_shape, args.force)
    shape = "x".join(map(str, contract["shape"]))
    print(
        f"{path}: ONNX opset 17; input {contract['dtype']} {shape} ({contract['values']}); outputs probabilities, label"
    )
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from gpunn.cli.plot import plot_runs
    from gpunn.cli.tune_folder import is_tune_folder

    if any(is_tune_folder(Path(d)) for d in args.runs):
        from gpunn.cli.study_pictures import write_study_pictures

        print("\n".join(write_study_pictures(args.runs, args.output, args.weights, args.force)))
        return 0
    if args.weights:
        from gpunn.cli.pictures import write_weights_pictures

        print("\n".join(write_weights_pictures(args.runs, args.output, args.force)))
        return 0
    output = Path(args.output) if args.output else None
    print(plot_runs([Path(d) for d in args.runs], output, force=args.force))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from gpunn.cli.serve import serve

    serve(args.checkpoint, args.device, args.host, args.port)
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from gpunn.data.datasets import cache_dir
    from gpunn.data.download import download_file, mirrors_for
    from gpunn.data.sources import FILES, SOURCES
    from gpunn.data.verify import sha256_of
    from gpunn.outputs import check_output

    source = SOURCES[args.dataset]
    dest = Path(args.data_dir) if args.data_dir else cache_dir() / source.name
    targets = [dest / file_name for file_name in FILES.values()]
    present = {t for t in targets if t.is_file() and sha256_of(t) == source.sha256[t.name]}
    for target in targets:  # a file there that is not the official one is replaced only with --force
        if target not in present:
            check_output(target, args.force)
    for target in targets:
        if target in present:
            print(f"{target}: already present, checksum OK")
            continue
        path = download_file(
            target.name, source.sha256[target.name], dest, mirrors_for(source), replace=args.force
        )
        print(f"{path}: downloaded, checksum OK")
    return 0


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from gpunn.data.datasets import cache_dir
    from gpunn.data.verify import verify_folder

    results = verify_folder(args.data_dir or cache_dir(), args.dataset)
    for ok, line in results:
        print(("OK    " if ok else "FAIL  ") + line)
    failed = sum(not ok for ok, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from gpunn.data.datasets import DIGITS_IMAGES, DIGITS_TEST_SIZE, cache_dir, find_in
    from gpunn.data.download import mirrors_for
    from gpunn.data.sources import FILES, SOURCES

    print(f"cache: {cache_dir()} (GPUNN_DATA_DIR, when set, is used instead)")
    for name, source in SOURCES.items():
        cached = all(find_in(cache_dir(), name, f) for f in FILES.values())
        print(
            f"{name}: {source.sizes['train']} train / {source.sizes['test']} test, 28x28 uint8, "
            f"{len(source.class_names)} classes; {'cached' if cached else 'not cached'}"
        )
        print(f"  classes: {', '.join(source.class_names)}")
        print(f"  mirrors: {', '.join(mirrors_for(source))}")
    print(
        f"digits: scikit-learn's bundled 8x8 digits, {DIGITS_IMAGES - DIGITS_TEST_SIZE} train / {DIGITS_TEST_SIZE} test, "
        "needs no network"
    )
    return 0


def _force_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace {what} if already there (a run's own files are never replaced)",
    )


def _device_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu | cuda | cuda:N | auto | strict (default: GPUNN_DEVICE or cpu)")
    parser.add_argument("--dtype", help="float32 | float64 (default: GPUNN_DTYPE or float32)")


def _training_flags(parser: argparse.ArgumentParser, as_lists: bool) -> None:
    _device_flags(parser)
    parser.add_argument(
        "--data-dir", help="folder with the dataset files (default: GPUNN_DATA_DIR, the cache)"
    )
    parser.add_argument("--recipe", help=_recipe_help())
    for flag, kind, text in TRAIN_FLAGS:
        text = _help_with_choices(_setting(flag), text)
        if as_lists:
            sep = "'/'" if flag == "--hidden" else "','"
            parser.add_argument(flag, help=f"{text}; a {sep}-separated list sweeps over it")
        else:
            parser.add_argument(flag, type=kind, help=text)


def _tune_flags(parser: argparse.ArgumentParser) -> None:
    """The training flags of `gpunn tune`: a searchable one takes a value, a list or a range."""
    from gpunn.cli.tune_space import LOG_SCALE, SEARCHABLE

    _device_flags(parser)
    parser.add_argument(
        "--data-dir", help="folder with the dataset files (default: GPUNN_DATA_DIR, the cache)"
    )
    parser.add_argument("--recipe", help=_recipe_help())
    for flag, kind, text in TRAIN_FLAGS:
        key = _setting(flag)
        text = _help_with_choices(key, text)
        if key == "val_size":
            text = "images held out for validation, which ranks and prunes the trials (default 10%%, at most 5000)"
        if key == "seed":
            text += "; also seeds TPE, so one process gives the same study again"
        if key not in SEARCHABLE:
            parser.add_argument(flag, type=kind, help=f"{text}; the same for every trial")
            continue
        sep = "/" if key == "hidden" else ","
        ranged = (
            ""
            if kind is str
            else f", or a range LOW:HIGH sampled {'on a log scale' if key in LOG_SCALE else 'uniformly'}"
        )
        parser.add_argument(flag, help=f"{text}; a '{sep}'-separated list is a categorical choice{ranged}")


def build_parser() -> argparse.ArgumentParser:
    from gpunn import __version__
    from gpunn.cli.tracking import add_tracking_arguments
    from gpunn.data.sources import SOURCES

    parser = _Parser(prog="gpunn", description="Train and use small MLPs on CPU or GPU.")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    info = commands.add_parser("info", help="versions, backends and the device that would be chosen")
    info.set_defaults(run=_cmd_info)

    train = commands.add_parser(
        "train", help="train an MLP (defaults: our default 784-128-64-10 recipe on MNIST)"
    )
    _training_flags(train, as_lists=False)
    train.add_argument("--out", help="run folder for config.json, metrics.jsonl, checkpoint.npz")
    train.add_argument("--resume", metavar="OUT", help="continue the run saved in OUT (on its device)")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument(
        "--no-stall-check",
        action="store_true",
        help="train on when the loss sits at chance level (by default a run with dead units stops)",
    )
    train.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI: mpiexec -n K gpunn train --distributed ...",
    )
    add_tracking_arguments(train)
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix")
    evaluate.add_argument("checkpoint", help="a checkpoint.npz or a run folder")
    evaluate.add_argument("--dataset", help="default: the dataset the model was trained on")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--device")
    evaluate.add_argument("--plot", action="store_true", help="also write confusion.png and mistakes.png")
    _force_flag(evaluate, "confusion.png and mistakes.png")
    evaluate.set_defaults(run=_cmd_evaluate)

    predict = commands.add_parser(
        "predict", help="top-k classes for .npy, IDX or PNG inputs (28x28, white digit on black, like MNIST)"
    )
    predict.add_argument("checkpoint", help="a checkpoint.npz or a run folder")
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument(
        "--top", type=int, default=3, help="how many classes to show (1..the number of classes)"
    )
    predict.add_argument(
        "--invert", action="store_true", help="flip dark-on-light images to MNIST's white digit on black"
    )
    predict.add_argument("--device")
    predict.set_defaults(run=_cmd_predict)

    sweep = commands.add_parser("sweep", help="train once per combination of listed values, compare")
    _training_flags(sweep, as_lists=True)
    sweep.add_argument(
        "--out", help="a new folder for one run per combination and the plot (default: runs/sweep-<time>)"
    )
    sweep.add_argument("--jobs", type=int, default=1, help="train K combinations at a time, in K processes")
    sweep.add_argument(
        "--index",
        type=int,
        help="train only combination I (1-based, its folder's number): one per array-job task",
    )
    add_tracking_arguments(sweep)
    sweep.set_defaults(run=_cmd_sweep)

    tune = commands.add_parser(
        "tune",
        help="search settings with Optuna (TPE, median pruning on the validation loss); one run per trial",
        description="Each trial is a gpunn run in OUT/trial-NNNN, ranked and pruned on its validation loss "
        "(the test set is only reported). No search flag given: --lr 1e-4:1 --hidden 64,128/128,64/256,128 "
        "--batch-size 64,128,256 --dropout 0:0.5 --weight-decay 0:1e-3. Ctrl-C keeps the finished trials; "
        "the same command continues the study.",
    )
    _tune_flags(tune)
    add_tracking_arguments(tune)
    tune.add_argument(
        "--trials",
        type=int,
        required=True,
        help="the study's total number of trials, over every process and rerun that shares it",
    )
    tune.add_argument("--timeout", type=float, help="start no trial after S seconds (a running one finishes)")
    tune.add_argument(
        "--storage",
        help="where the study lives (default: OUT/study.db): a database URL such as sqlite:///FILE or "
        "postgresql://USER@HOST/DB, or journal:FILE (Optuna's journal file); processes given the same "
        "--storage and --study share one study",
    )
    tune.add_argument("--study", help="the study's name (default: tune; needed with --storage)")
    tune.add_argument(
        "--out", help="the tune folder (default: runs/tune-<time>); an existing one continues its study"
    )
    tune.set_defaults(run=_cmd_tune)

    export = commands.add_parser("export", help="write a trained model as an ONNX graph")
    export.add_argument("checkpoint", metavar="RUN", help="a run folder, its checkpoint.npz or best.npz")
    export.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    export.add_argument(
        "--input-dtype", default="uint8", help="uint8 (pixels 0-255, the default) | float32 (pixel/255)"
    )
    export.add_argument("--input-shape", help="image (N,28,28) | flat (N,784); default: image when square")
    _force_flag(export, "the .onnx file")
    export.set_defaults(run=_cmd_export)

    plot = commands.add_parser(
        "plot",
        help="PNG of loss and accuracy curves of one or more runs; of a tune folder, its study's "
        "optimization history and parameter importances",
    )
    plot.add_argument("runs", nargs="+", metavar="OUT")
    plot.add_argument(
        "--output",
        help="PNG path (default: OUT/curves.png for one run, comparison.png beside several; OUT/weights.png)",
    )
    plot.add_argument("--weights", action="store_true", help="the first layer's weights, one tile per unit")
    _force_flag(plot, "the PNG")
    plot.set_defaults(run=_cmd_plot)

    serve = commands.add_parser("serve", help="a local page to draw a digit and see the model's guesses")
    serve.add_argument("checkpoint", help="a checkpoint.npz or a run folder (a 28x28 model)")
    serve.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free one")
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    serve.add_argument("--device")
    serve.set_defaults(run=_cmd_serve)

    data = commands.add_parser("data", help="download, verify and describe datasets")
    data_commands = data.add_subparsers(
        dest="data_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    download = data_commands.add_parser("download", help="fetch a dataset into the cache (or --data-dir)")
    download.add_argument("--dataset", choices=list(SOURCES), default="mnist")
    download.add_argument("--data-dir", help="put the files here instead of the cache")
    _force_flag(download, "files there that are not the official ones")
    download.set_defaults(run=_cmd_data_download)
    verify = data_commands.add_parser("verify", help="checksums, shapes and label counts of a data folder")
    verify.add_argument("--data-dir", help="folder to check (default: the cache)")
    verify.add_argument("--dataset", choices=list(SOURCES), help="default: whatever is there")
    verify.set_defaults(run=_cmd_data_verify)
    data_info = data_commands.add_parser("info", help="datasets, cache location and mirrors")
    data_info.set_defaults(run=_cmd_data_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        # the command owns its process: tune its allocator
        if args.run in (_cmd_train, _cmd_sweep, _cmd_tune):
            from gpunn.backend.numpy_backend import tune_host_allocator

            tune_host_allocator()
        return args.run(args)
    except GpunnError as exc:
        if not exc.told_elsewhere:  # under MPI, rank 0 alone reports an error all ranks share
            print(f"gpunn: error: {cli_message(exc)}", file=sys.stderr)
        return exc.exit_code
    except MemoryError as exc:  # evaluate, predict, export: the size asked for, in one line
        print(f"gpunn: error: {cli_message(out_of_memory(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # also one that lands while a module is being imported
        print("gpunn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # a reader of our output went away (`gpunn info | head -1`): nothing to say
        quiet_stdout()
        return 0
    except OSError as exc:  # a file or folder we were told to use: unwritable, missing, full disk, ...
        print(f"gpunn: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
