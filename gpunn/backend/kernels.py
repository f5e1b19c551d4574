"""The one registry of CUDA sources gpunn ships: CupyBackend builds its kernels from here, and
scripts/check_kernels.py (NVRTC) and the test stand-in compile exactly these sources.

Each entry is a CuPy ElementwiseKernel: typed parameter lists and a C body run once per element.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ElementwiseSource:
    """The four arguments of cupy.ElementwiseKernel(in_params, out_params, operation, name)."""

    name: str
    in_params: str
    out_params: str
    operation: str

    def build(self, cupy):
        return cupy.ElementwiseKernel(self.in_params, self.out_params, self.operation, self.name)


KERNELS: dict[str, ElementwiseSource] = {
    k.name.removeprefix("gpunn_"): k
    for k in (
        ElementwiseSource("gpunn_relu_backward", "T grad, T y", "T out", "out = y > (T)0 ? grad : (T)0"),
        ElementwiseSource("gpunn_sgd", "T grad, T lr", "T value", "value = value - lr * grad"),
        ElementwiseSource(
            "gpunn_momentum",
            "T grad, T lr, T mu, T wd, bool nesterov",
            "T value, T velocity",
            """
            T g = grad + wd * value;
            T v = mu * velocity + g;
            velocity = v;
            value = value - lr * (nesterov ? g + mu * v : v);
            """,
        ),
        ElementwiseSource(
            "gpunn_softmax_xent",
            "T z, T row_max, T log_norm, T y, T m",
            "T grad, T loss_term",
            """
            T log_p = z - row_max - log_norm;
            grad = (exp(log_p) - y) / m;
            loss_term = -y * log_p;
            """,
        ),
    )
}

# C type of each dtype a kernel's type placeholder may take (CuPy's _scalar.pyx / _dtype.get_typename).
C_TYPES = {"float32": "float", "float64": "double", "bool": "bool", "int64": "long long", "int32": "int"}


def parse_params(params: str) -> list[tuple[str, str]]:
    """'T grad, bool flag' -> [('T', 'grad'), ('bool', 'flag')] (CuPy's ParameterInfo, without raw)."""
    return [tuple(p.split()) for p in params.split(",") if p.strip()]


def cuda_source(kernel: ElementwiseSource, dtype: str) -> str:
    """A CUDA translation unit with the kernel's body, T bound to `dtype`, as CuPy generates it
    (cupy/_core/_kernel.pyx _get_elementwise_kernel_code and _get_simple_elementwise_kernel_code): one
    thread per element, each array parameter bound by reference (`const T &x = _raw_x[i];`, outputs
    without const), the operation followed by ';'."""
    params, body = [], []
    for type_name, name in parse_params(kernel.in_params):
        ctype = C_TYPES.get(type_name, type_name)
        params.append(f"const {ctype}* _raw_{name}")
        body.append(f"const {ctype} &{name} = _raw_{name}[i];")
    for type_name, name in parse_params(kernel.out_params):
        ctype = C_TYPES.get(type_name, type_name)
        params.append(f"{ctype}* _raw_{name}")
        body.append(f"{ctype} &{name} = _raw_{name}[i];")
    lines = "\n        ".join(body)
    return (
        f"typedef {C_TYPES[dtype]} T;\n"
        f'extern "C" __global__ void {kernel.name}({", ".join(params)}, long long _n) {{\n'
        "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
        "    if (i < _n) {\n"
        f"        {lines}\n"
        f"        {kernel.operation.strip()};\n"  # CuPy ends the operation with ';' too
        "    }\n"
        "}\n"
    )
