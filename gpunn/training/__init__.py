"""Training: `train()` and its setup (run.py), the epoch loop and its parts, configs and recipes.

Depends on gpunn.backend, gpunn.nn and gpunn.data; nothing below it imports it. `train` and `TrainResult`
load on first use, so `import gpunn.training.config` (the command line's help) stays light.
"""


def __getattr__(name: str):
    if name in ("train", "TrainResult"):
        from gpunn.training import run

        return getattr(run, name)
    raise AttributeError(f"module 'gpunn.training' has no attribute {name!r}")


__all__ = ["TrainResult", "train"]
