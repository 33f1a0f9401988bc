"""ONNX Runtime session options, set alike by the measuring child and the service (standard library only)."""

from __future__ import annotations


def session_options(ort, settings):
    """ONNX Runtime's options from a Request or a ServerConfig (the same field names): the child and the service
    run a model alike."""
    options = ort.SessionOptions()
    # ORT sizes its pools from the host's cores, not from affinity: both counts are set explicitly.
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = settings.enable_cpu_mem_arena
    options.enable_mem_pattern = settings.enable_mem_pattern
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0")
    options.log_severity_level = 3
    return options
