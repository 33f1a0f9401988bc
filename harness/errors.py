"""The one error type the CLI turns into a one-line message and exit code 2."""


class HarnessError(Exception):
    """Bad input or a failed step the user can act on; the message says what to do."""


class ParityError(HarnessError):
    """The exported ONNX model does not reproduce the PyTorch model's output."""


class VariantError(HarnessError):
    """ONNX Runtime could not make a variant (quantization or conversion failed); that row fails."""
