"""The `gpunn` command. Expected failures (GpunnError) print one line and exit non-zero, never a traceback."""

from __future__ import annotations

import argparse
import sys

from gpunn.errors import GpunnError


def _cmd_info(args: argparse.Namespace) -> int:
    from gpunn.info import info_lines

    print("\n".join(info_lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gpunn import __version__

    parser = argparse.ArgumentParser(prog="gpunn", description="Train and use small MLPs on CPU or GPU.")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="versions, backends and the device that would be chosen")
    info.set_defaults(run=_cmd_info)
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
