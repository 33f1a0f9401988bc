"""ONNX export and edge-benchmark harness for PyTorch vision models."""

__version__ = "0.1.0"
