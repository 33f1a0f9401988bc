"""Which runner measures a bench: the target's (`runner = "ssh://..."`), a Ray cluster's (`--cluster`), or local."""

from __future__ import annotations

from harness.runners.local import LocalRunner, Runner


def make_runner(target, cluster: str | None = None) -> Runner:
    """The runner a target names (`runner = "ssh://..."`), a Ray cluster's when `cluster` is given, else local."""
    if cluster:
        from harness.runners.ray_cluster import RayRunner

        return RayRunner(cluster)
    if target.device.runner.startswith("ssh://"):
        from harness.runners.ssh import SshRunner

        return SshRunner(target.device)
    return LocalRunner()
