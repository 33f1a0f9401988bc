"""ONNX Runtime's CPU execution provider: the harness's default backend, the session made as it always was."""

from __future__ import annotations

import time

from harness.measure.session import session_options


class OrtModel:
    """One InferenceSession; `run` is one `session.run` of the whole batch."""

    def __init__(self, request, ort):
        started = time.perf_counter_ns()
        self.session = ort.InferenceSession(request.onnx_path, session_options(ort, request),
                                            providers=["CPUExecutionProvider"])
        self.load_ms = (time.perf_counter_ns() - started) / 1e6
        self.input_name = self.session.get_inputs()[0].name
        self.version = ort.__version__
        self.precision = "as in the file"  # ORT's CPU EP runs each node in its file's types

    def run(self, batch):
        return self.session.run(None, {self.input_name: batch})[0]

    def feed_for(self, batch):
        """Bound arguments for the timed loop: the call the harness has always timed, `session.run(None, feed)`."""
        return self.session.run, (None, {self.input_name: batch})

    def reload(self, batch_size: int):
        return self  # a session takes any batch its file allows


def load(request) -> OrtModel:
    import onnxruntime as ort

    return OrtModel(request, ort)
