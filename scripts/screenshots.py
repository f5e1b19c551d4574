"""The README's pictures: train on MNIST for a few epochs, then evaluate --plot, plot --weights and a
screenshot of `gpunn serve` with a drawn 7, all copied (palette-compressed) into docs/img/.

python scripts/screenshots.py --data-dir DIR [--epochs 3] [--run runs/screenshots]  (an existing run is reused)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
SEVEN = [(70, 60), (210, 60), (170, 130), (130, 230)]


def gpunn(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gpunn", *args], check=True, env=os.environ)


def keep_small(source: Path, name: str, width: int) -> None:
    """Copy a PNG into docs/img at most `width` pixels wide, in 256 colours (tens of KB)."""
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        image.quantize(256, method=Image.Quantize.FASTOCTREE).save(IMG / name, optimize=True)
    print(f"wrote {IMG / name}")


def main() -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    from page_driver import chromium, draw_stroke, served

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with the MNIST files")
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--run", default="runs/screenshots")
    args = parser.parse_args()
    run = Path(args.run)
    if not (run / "checkpoint.npz").exists():  # a finished run is reused, so re-shooting is quick
        gpunn("train", "--out", str(run), "--epochs", args.epochs, "--data-dir", args.data_dir, "--quiet")
    # --force: a reused run's pictures are this script's own, from its last shoot
    gpunn("evaluate", str(run), "--data-dir", args.data_dir, "--plot", "--force")
    gpunn("plot", str(run), "--weights", "--force")
    IMG.mkdir(parents=True, exist_ok=True)
    keep_small(run / "confusion.png", "confusion.png", 560)
    keep_small(run / "mistakes.png", "mistakes.png", 560)
    keep_small(run / "weights.png", "weights.png", 520)
    with (
        tempfile.TemporaryDirectory() as profile,
        served(run) as url,
        chromium(Path(profile), (1000, 640)) as page,
    ):
        page.get(url)
        draw_stroke(page, SEVEN)
        page.save_screenshot(str(run / "serve.png"))
    keep_small(run / "serve.png", "serve.png", 800)
    return 0


if __name__ == "__main__":
    sys.exit(main())
