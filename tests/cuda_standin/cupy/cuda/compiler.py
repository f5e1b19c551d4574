"""cupy.cuda.compiler of the stand-in: the exception CuPy raises when a kernel does not compile."""


class CompileException(Exception):
    def __init__(self, msg, source="", name="", options=()):
        super().__init__(msg)
        self.source, self.name, self.options = source, name, options
