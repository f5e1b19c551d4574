"""The API reference, generated from gpunn's docstrings with pdoc (the `docs` extra): HTML under docs/api/.

python scripts/build_docs.py [--out DIR]

Modules that need what is not installed here (CuPy for gpunn.backend.cupy_backend, mpi4py for the MPI
parts) are documented where they import and reported otherwise; the generated HTML is not committed.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def modules() -> list[str]:
    """Every module of gpunn: pdoc walks a package's submodules only where its `__all__` names them, and
    gpunn's and gpunn.training's name none."""
    import pkgutil

    import gpunn

    found = [m.name for m in pkgutil.walk_packages(gpunn.__path__, "gpunn.")]
    return ["gpunn", *(name for name in found if not name.endswith("__main__"))]  # __main__ runs the CLI


# pdoc's note for a module that one spec names and another's walk already found: expected, since every
# module is named (see modules())
_NAMED_TWICE = "but a module with this name has already been added"


def build(out: Path) -> list[str]:
    """Write the reference into `out` (a new or empty folder); returns pdoc's warnings, one line each."""
    try:
        import pdoc
        import pdoc.render
    except ImportError:
        raise SystemExit('building the API reference needs pdoc: pip install -e ".[docs]"') from None
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} already holds files: remove it or choose another --out")
    pdoc.render.configure(docformat="markdown", footer_text="gpunn API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules(), output_directory=out)
    return [str(w.message).splitlines()[0] for w in caught if _NAMED_TWICE not in str(w.message)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "api", help="default: docs/api")
    args = parser.parse_args()
    for line in build(args.out):
        print(f"note: {line}")
    print(f"wrote {args.out / 'index.html'} (open it in a browser)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
