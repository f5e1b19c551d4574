"""The `gpunn` command. Expected failures (GpunnError) print one line and exit non-zero, never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpunn.errors import GpunnError


def _cmd_info(args: argparse.Namespace) -> int:
    from gpunn.info import info_lines

    print("\n".join(info_lines()))
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from gpunn.data.datasets import cache_dir
    from gpunn.data.download import download_file, mirrors_for
    from gpunn.data.sources import FILES, SOURCES
    from gpunn.data.verify import sha256_of

    source = SOURCES[args.dataset]
    dest = Path(args.data_dir) if args.data_dir else cache_dir() / source.name
    for file_name in FILES.values():
        target = dest / file_name
        if target.exists() and sha256_of(target) == source.sha256[file_name]:
            print(f"{target}: already present, checksum OK")
            continue
        print(
            f"{download_file(file_name, source.sha256[file_name], dest, mirrors_for(source))}: downloaded, checksum OK"
        )
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
    from gpunn.data.datasets import DIGITS_TEST_SIZE, cache_dir, find_in
    from gpunn.data.download import mirrors_for
    from gpunn.data.sources import FILES, SOURCES

    print(f"cache: {cache_dir()} (GPUNN_DATA_DIR, when set, is used instead)")
    for name, source in SOURCES.items():
        cached = all(find_in(cache_dir(), name, f) for f in FILES.values())
        print(
            f"{name}: 60000 train / 10000 test, 28x28 uint8, 10 classes; {'cached' if cached else 'not cached'}"
        )
        print(f"  classes: {', '.join(source.class_names)}")
        print(f"  mirrors: {', '.join(mirrors_for(source))}")
    print(
        f"digits: scikit-learn's bundled 8x8 digits, {1797 - DIGITS_TEST_SIZE} train / {DIGITS_TEST_SIZE} test, "
        "needs no network"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gpunn import __version__

    parser = argparse.ArgumentParser(prog="gpunn", description="Train and use small MLPs on CPU or GPU.")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="versions, backends and the device that would be chosen")
    info.set_defaults(run=_cmd_info)

    data = commands.add_parser("data", help="download, verify and describe datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    download = data_commands.add_parser("download", help="fetch a dataset into the cache (or --data-dir)")
    download.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    download.add_argument("--data-dir", help="put the files here instead of the cache")
    download.set_defaults(run=_cmd_data_download)
    verify = data_commands.add_parser("verify", help="checksums, shapes and label counts of a data folder")
    verify.add_argument("--data-dir", help="folder to check (default: the cache)")
    verify.add_argument("--dataset", choices=["mnist", "fashion-mnist"], help="default: whatever is there")
    verify.set_defaults(run=_cmd_data_verify)
    data_info = data_commands.add_parser("info", help="datasets, cache location and mirrors")
    data_info.set_defaults(run=_cmd_data_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except GpunnError as exc:
        print(f"gpunn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gpunn: interrupted", file=sys.stderr)
        return 130
