"""ONNX Runtime session options: they live with the backend (harness.backends.onnxruntime_cpu); kept here for the
service until it imports them from there."""

from harness.backends.onnxruntime_cpu import session_options  # noqa: F401
