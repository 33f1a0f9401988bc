"""The measuring child's package, shipped whole to an ssh device, a Ray node or a side runtime: the protocol, the
child (worker), the backends, lockstep blocks, the watchdog, the device sides of the remote runners and the
machine fingerprint. Standard library, numpy and the backend's runtime only; nothing of the harness outside this
folder but harness/__init__.py (a test holds that)."""


def die_with_parent() -> None:
    """Ask the kernel to kill this process when the harness that started it dies: even a kill -9 of the harness leaves
    no measuring child, server or load generator behind (SIGTERM and Ctrl-C end them in the harness's own clean-up)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent still ends its children on any exception it sees
