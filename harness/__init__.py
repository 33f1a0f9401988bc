"""ONNX export and edge-benchmark harness for PyTorch vision models.

From Python: `harness.bench(model, target, ...)` measures a torch.nn.Module in memory (or a suite) under a target
and returns the typed rows and the gate's decisions (harness.bench.api).
"""

__version__ = "0.1.0"


def bench(model, target="watch", **options):
    """harness.bench.api.bench: imported on first use, so `import harness` stays light (the measuring child imports it)."""
    from harness.bench.api import bench as run

    return run(model, target, **options)
