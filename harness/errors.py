"""The error types the CLI turns into one line, and the exit codes it returns."""

EXIT_OK = 0
EXIT_FAILED = 1  # a budget broken, a row not measured, a regression, an unfaithful export
EXIT_BAD_INPUT = 2  # the user can fix it; the message says how
EXIT_INTERNAL = 3  # a bug in harness: the message asks for --debug and a report
EXIT_INTERRUPTED = 130


class HarnessError(Exception):
    """Bad input or a failed step the user can act on; the message says what to do."""


class ParityError(HarnessError):
    """The exported ONNX model does not reproduce the PyTorch model's output."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C with a message saying what had already been written."""


class VariantError(HarnessError):
    """ONNX Runtime could not make a variant (quantization or conversion failed); that row fails."""


class ExportError(HarnessError):
    """No exporter could turn the model into a faithful ONNX file; that model's rows fail, the others are measured."""
