"""The `gpunn` command (main.py) and what only it uses: info, plots, pictures, the drawing page, ONNX
export, predict's input readers and sweeps. The top of the dependency order: it imports gpunn.training,
gpunn.nn and gpunn.backend; they never import it."""
