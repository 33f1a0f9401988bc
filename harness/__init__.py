"""ONNX export and edge-benchmark harness for PyTorch vision models.

From Python: `harness.bench(model, target, ...)` measures a torch.nn.Module in memory (or a suite) under a target
and returns the typed rows and the gate's decisions (harness.bench.api).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`harness.bench` on first use: the bench package, which is callable (harness.bench.api.bench); imported lazily so
    `import harness` stays light (the measuring child imports it)."""
    if name == "bench":
        import importlib

        return importlib.import_module("harness.bench")
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
