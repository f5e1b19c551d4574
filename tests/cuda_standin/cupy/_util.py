"""cupy._util of the stand-in: the warning CuPy gives where it chose a slow path for the caller."""


class PerformanceWarning(RuntimeWarning):
    """cupy/_util.pyx line 185: e.g. peer access enabled automatically for an operand of another device."""
