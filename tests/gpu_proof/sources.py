"""The CUDA translation unit of one ElementwiseKernel call: the one swappable source provider.

kernel_source() renders what CuPy 14.2 generates (cupy/_core/_kernel.pyx _get_elementwise_kernel_code and
_get_simple_elementwise_kernel_code, parameter types from _ArgInfo.get_param_c_type, typedefs from
_TypeMap.get_typedef_code) behind the headers compile_with_cache prepends (cupy/_core/core.pyx
cupy_header_list). When tests/gpu_proof/cupy_codegen.py (CuPy's own code generation) is available, this
function is where it plugs in; nothing else in gpu_proof renders source.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpunn.backend.kernels import C_TYPES, parse_params

# cupy/_core/core.pyx cupy_header_list, prepended by compile_with_cache as '#include <%s>\n' each
CUPY_HEADERS = ("cupy/complex.cuh", "cupy/carray.cuh", "cupy/atomics.cuh", "cupy/math_constants.h")


@dataclass(frozen=True)
class ArgInfo:
    """cupy/_core/_kernel.pyx _ArgInfo: what the generated code depends on for one argument."""

    kind: str  # "ndarray", "scalar" or "indexer"
    dtype: str | None
    ndim: int = 0
    c_contiguous: bool = True
    index_32_bits: bool = True

    def c_type(self) -> str:  # _ArgInfo.get_c_type
        if self.kind == "ndarray":
            return f"CArray<{C_TYPES[self.dtype]}, {self.ndim}, {int(self.c_contiguous)}, {int(self.index_32_bits)}>"
        if self.kind == "scalar":
            return C_TYPES[self.dtype]
        return f"CIndexer<{self.ndim}, {int(self.index_32_bits)}>"


def kernel_source(kernel, type_map: dict, arginfos: list[ArgInfo]) -> str:
    """The full translation unit CuPy hands NVRTC for `kernel` (an ElementwiseSource) called with arguments
    described by arginfos (the kernel's in and out parameters, then the indexer), T etc. bound by type_map."""
    params = parse_params(kernel.in_params) + parse_params(kernel.out_params)
    consts = [True] * len(parse_params(kernel.in_params)) + [False] * len(parse_params(kernel.out_params))
    declared, binds = [], []
    for p, is_const, info in zip(params, consts, arginfos, strict=False):
        const = "const " if is_const else ""
        name = f"_raw_{p.name}" if info.kind == "ndarray" and not p.raw else p.name
        declared.append(f"{const}{info.c_type()} {name}")
        if info.kind == "ndarray" and not p.raw:
            ctype = p.type_name if p.is_placeholder else C_TYPES[p.type_name]  # ParameterInfo.ctype
            binds.append(f"{const}{ctype} &{p.name} = _raw_{p.name}[_ind.get()];")
    declared.append(f"{arginfos[-1].c_type()} _ind")
    typedefs = "".join(f"typedef {C_TYPES[t]} {name};\n" for name, t in sorted(type_map.items()))
    operation = "\n".join([*binds, kernel.operation])
    headers = "".join(f"#include <{h}>\n" for h in CUPY_HEADERS)
    return (
        f"{headers}\n    {typedefs}\n    \n"
        f'    extern "C" __global__ void {kernel.name}({", ".join(declared)}) {{\n'
        "      ;\n      #pragma unroll 1\n      CUPY_FOR(i, _ind.size()) {\n        _ind.set(i);\n"
        f"        {operation};\n      }}\n      ;\n    }}\n    "
    )
