"""cupy.cuda.nccl of the stand-in: as in a CuPy install without NCCL, the module imports and says
available = False (cupy/cuda/nccl.py sets it when cupy_backends.cuda.libs.nccl fails to import)."""

available = False
