"""A backend defined outside the harness: ONNX's own reference evaluator (numpy kernels) running the exported graph.

It reaches the harness only through the entry point in harness_numpy_reference-0.1.dist-info (group
"harness.backends"), as an installed package's would: tests/test_plugins.py puts this folder on PYTHONPATH.
"""

from __future__ import annotations

import time

FILE_SUFFIX = ".onnx"  # it runs the exported file as it is
VARIANTS = ("fp32",)  # its numpy kernels are float ones
RUNTIME = "onnx"  # imported by the child before it pins its CPUs
PACKAGE = "onnx"  # the distribution of that runtime: a record made under another onnx release is A/B'd against it
INSTALL = "pip install onnx"


class ReferenceModel:
    """One onnx.reference.ReferenceEvaluator; a call runs the whole batch."""

    def __init__(self, path: str):
        import onnx
        from onnx.reference import ReferenceEvaluator

        started = time.perf_counter_ns()
        self.evaluator = ReferenceEvaluator(path)
        self.load_ms = (time.perf_counter_ns() - started) / 1e6
        self.input_name = self.evaluator.input_names[0]
        self.version = onnx.__version__
        self.precision = "f32 (numpy)"

    def run(self, batch):
        return self.evaluator.run(None, {self.input_name: batch})[0]

    def feed_for(self, batch):
        return self.run, (batch,)

    def reload(self, batch_size: int):
        return self  # the evaluator takes any batch


def load(request) -> ReferenceModel:
    return ReferenceModel(request.onnx_path)
