"""The measuring child's package, shipped whole to an ssh device, a Ray node or a side runtime: the protocol, the
child (worker), the backends, lockstep blocks, the watchdog, the device sides of the remote runners and the
machine fingerprint. Standard library, numpy and the backend's runtime only; nothing of the harness outside this
folder but harness/__init__.py (a test holds that)."""

import os


def runtime_environment(threads: int) -> None:
    """What every measured process sets before it imports a runtime: its thread pools sized to `threads`, and ONNX
    Runtime's telemetry off.

    ONNX Runtime (1.32 on Linux) starts a telemetry thread at import that about 9 s later starts three upload threads:
    +0.6 MB of VmHWM in a process that lives that long, so a model's memory depended on how long its child was
    timed (and on whether CI variables, which ORT checks, were set); the thread itself costs ~1 MB from import.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def die_with_parent() -> None:
    """Ask the kernel to kill this process when the harness that started it dies: even a kill -9 of the harness leaves
    no measuring child, server or load generator behind (SIGTERM and Ctrl-C end them in the harness's own clean-up)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent still ends its children on any exception it sees
