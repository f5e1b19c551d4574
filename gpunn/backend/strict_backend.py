"""The strict backend: array-api-strict arrays on its non-default device.

It behaves like a GPU for discipline: it refuses np.asarray(x), refuses mixing with NumPy arrays or other
devices, and has no random module. CPU CI runs the NN code on it to catch what a GPU would catch.
"""

from __future__ import annotations

import numpy as np

from gpunn.backend.base import Backend
from gpunn.errors import DeviceUnavailableError


class StrictBackend(Backend):
    name = "strict"
    device = "strict"

    def __init__(self, dtype_name: str = "float32"):
        try:
            import array_api_strict as xp
        except ImportError:
            raise DeviceUnavailableError(
                'the strict device needs array-api-strict: pip install "gpunn[test]"'
            ) from None
        super().__init__(xp, dtype_name, xp_device=xp.Device("device1"))
        self.array_type = type(xp.asarray(0.0))  # the Array class has no public name
        self._host_device = xp.Device("CPU_DEVICE")

    def _is_mine(self, array) -> bool:
        return isinstance(array, self.array_type) and array.device == self.xp_device

    def _upload(self, array, copy):
        return self.xp.asarray(array, device=self.xp_device, copy=True)

    def _download(self, array):
        return np.asarray(self.xp.asarray(array, device=self._host_device, copy=True))
