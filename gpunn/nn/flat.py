"""A model's parameters and gradients, each in one contiguous 1-D buffer with per-parameter views.

One buffer per model makes the optimizer update one pass (one fused kernel on a GPU) over every weight,
and lets data-parallel training send the gradient buffer to the allreduce as it is. Each Param's `.value`
(and, on backends that write in place, `.grad`) is a view into the buffers. The gradient buffer ends with
one spare slot after the gradients: a message (the stop flag) that rides along in the same allreduce.

On a functional backend (strict) nothing is written in place: updates return new buffers, and `set_values`
/ `set_gradient` rebind the views; gradients the layers return are gathered with one concat.
"""

from __future__ import annotations

import math

import numpy as np


class ParameterBuffer:
    """Flat value and gradient buffers for a list of Params on one backend."""

    def __init__(self, backend, params):
        self.backend, self.params = backend, list(params)
        self.shapes = [tuple(p.value.shape) for p in self.params]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.size = sum(self.sizes)
        self.values = backend.flatten([p.value for p in self.params]) if self.params else backend.zeros((0,))
        given = [p.grad for p in self.params]  # gradients set before adoption (a hand-built Param's)
        self._bind_values()
        self.gradient_with_slot = backend.zeros((self.size + 1,))
        self._bind_gradient()
        if self.params and all(g is not None for g in given):
            self.set_gradient(backend.flatten([*given, backend.zeros((1,))]))
        for param in self.params:
            param.owner = self

    @classmethod
    def of(cls, params, backend) -> ParameterBuffer:
        """The buffer these Params already live in, or a new one that adopts them."""
        if isinstance(params, ParameterBuffer):
            return params
        params = list(params)
        owner = getattr(params[0], "owner", None) if params else None
        if owner is not None and owner.backend is backend and owner.params == params:
            return owner
        return cls(backend, params)

    # ---- views ---------------------------------------------------------------------------------------------
    def views(self, flat) -> list:
        """Per-parameter views (reshaped slices) of a flat array laid out like the values."""
        reshape, out, offset = self.backend.xp.reshape, [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            out.append(reshape(flat[offset : offset + size], shape))
            offset += size
        return out

    def _bind_values(self) -> None:
        for param, view in zip(self.params, self.views(self.values), strict=True):
            param.value = view

    def _bind_gradient(self) -> None:
        self.gradient = self.gradient_with_slot[: self.size]
        self._grad_views = self.views(self.gradient)
        for param, view in zip(self.params, self._grad_views, strict=True):
            param.grad = view

    # ---- after a step ----------------------------------------------------------------------------------
    def set_values(self, flat) -> None:
        """Adopt the updated value buffer (the same array when the backend updated it in place)."""
        if flat is not self.values:
            self.values = flat
            self._bind_values()

    def collect_gradient(self):
        """The gradient buffer with its slot, after a backward pass (one concat on functional backends)."""
        if any(p.grad is not view for p, view in zip(self.params, self._grad_views, strict=True)):
            slot = self.backend.zeros((1,))
            self.set_gradient(self.backend.flatten([*(p.grad for p in self.params), slot]))
        return self.gradient_with_slot

    def set_gradient(self, flat_with_slot) -> None:
        """Adopt a gradient buffer (with its slot), e.g. the one an allreduce returned."""
        if flat_with_slot is not self.gradient_with_slot:
            self.gradient_with_slot = flat_with_slot
            self._bind_gradient()

    # ---- host copies -----------------------------------------------------------------------------------
    def split_host(self, flat_host: np.ndarray) -> list[np.ndarray]:
        """A host flat array cut into per-parameter host arrays (for checkpoints)."""
        return split(flat_host, self.shapes)

    def load_host(self, weights: list[np.ndarray]) -> None:
        """Copy host weights into a fresh value buffer on the device and rebind the views."""
        flat = np.concatenate([np.ravel(w) for w in weights]) if weights else np.zeros(0)
        self.values = self.backend.from_host(flat)
        self._bind_values()


def split(flat: np.ndarray, shapes) -> list[np.ndarray]:
    """Cut a host 1-D array into arrays of the given shapes, in order (copies)."""
    out, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(np.array(flat[offset : offset + size]).reshape(shape))
        offset += size
    return out
