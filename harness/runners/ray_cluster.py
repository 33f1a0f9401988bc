"""Fan measurements out over a Ray cluster: `harness bench --cluster ray://HOST:PORT` (or `auto`, or HOST:PORT).

Each node that may measure offers one unit of the custom resource `harness_measure` (`ray start
--resources '{"harness_measure": 1}'`); every measurement asks for that unit, so a node never runs two
measurements at once. The bench gives each model (with its A/B partner) one node for all its variants
and rounds (`place`), so ratios within a model compare like with like, and runs the models' groups side
by side. Nodes need numpy, onnxruntime and ray; the child's package (harness/measure/) travels with
the job (`runtime_env` py_modules). Export, quantization and calibration stay on the controller: they
need torch and the data, and their results are cached there; only the ONNX files travel.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.measure.protocol import Reply, Request
from harness.measure.ray_node import STAGED, measure_on_node, measure_together_on_node
from harness.runners import RemoteLockstep, copy_child_package

RESOURCE = "harness_measure"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise HarnessError("--cluster needs Ray, which is not installed: pip install 'harness[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable address for minutes: knock on the port first, a few seconds at most."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise HarnessError(f"--cluster {address}: use ray://HOST:PORT (Ray Client), HOST:PORT (the head's GCS) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise HarnessError(f"cannot connect to the Ray cluster at {address}: nothing answers on {host}:{port} "
                           f"({type(e).__name__}); start it with ray start --head, or pass its address") from None


class RayRunner:
    """Measurements as Ray tasks pinned to nodes that offer `harness_measure`."""

    name = "ray"

    def __init__(self, address: str):
        self.address = address
        self._ray = _import_ray()
        self._package_dir = tempfile.mkdtemp(prefix="harness-ray-")
        self._objects: dict[tuple, object] = {}
        self._task = self._together_task = None
        self.nodes: list[dict] = []

    def check_target(self, target) -> None:
        """Connect, ship the child's modules with the job, and find the nodes that may measure (connected once: a
        search measures several benches on one runner)."""
        ray = self._ray
        if self.nodes:
            self._check_threads(target)
            return
        package = Path(self._package_dir) / "harness"
        package.mkdir(exist_ok=True)
        copy_child_package(package)
        if self.address != "auto":
            _check_reachable(self.address)
        try:  # an existing cluster only: a fresh local Ray would have no node offering RESOURCE
            ray.init(address=self.address, runtime_env={"py_modules": [str(package)]}, log_to_driver=False,
                     logging_level="ERROR")
        except Exception as e:  # Ray raises ConnectionError, RuntimeError or its own errors here
            raise HarnessError(f"cannot connect to the Ray cluster at {self.address}: {type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no message'}") from None
        self._task = ray.remote(measure_on_node)
        self._together_task = ray.remote(measure_together_on_node)
        self.nodes = sorted((n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(RESOURCE)),
                            key=lambda n: n["NodeID"])
        if not self.nodes:
            raise HarnessError(f"no node of the Ray cluster at {self.address} offers the '{RESOURCE}' resource; start "
                               f"each measuring node with ray start --resources '{{\"{RESOURCE}\": 1}}'")
        self._check_threads(target)

    def _check_threads(self, target) -> None:
        small = [n for n in self.nodes if n["Resources"].get("CPU", 0) < target.device.threads]
        if small:
            raise HarnessError(f"{target.where}: threads = {target.device.threads} but Ray node "
                               f"{small[0]['NodeManagerAddress']} has {small[0]['Resources'].get('CPU', 0):g} CPUs; "
                               f"set threads <= the smallest node's CPUs")

    @property
    def places(self) -> int:
        return len(self.nodes)

    def place(self, index: int) -> "PinnedRayRunner":
        """This runner, with every measurement on one node (the index-th, round robin)."""
        return PinnedRayRunner(self, self.nodes[index % len(self.nodes)])

    def run(self, request: Request, memory_cap_mb: float | None = None, timeout_s: float = 900) -> Reply:
        return self.place(0).run(request, memory_cap_mb, timeout_s)

    def _object(self, path: str):
        """The file's bytes in Ray's object store, put there once per run."""
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self._objects:
            self._objects[key] = self._ray.put(Path(path).read_bytes())
        return self._objects[key]

    def close(self) -> None:
        if self._ray.is_initialized():
            self._ray.shutdown()
        shutil.rmtree(self._package_dir, ignore_errors=True)


@dataclasses.dataclass
class PinnedRayRunner(RemoteLockstep):
    parent: RayRunner
    node: dict
    name: str = "ray"

    def _measure(self, requests: list[Request], memory_cap_mb, timeout_s: float, together: bool) -> list[Reply]:
        ray = self.parent._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        files = [{field: self.parent._object(getattr(r, field)) for field in STAGED if getattr(r, field)} for r in requests]
        task = (self.parent._together_task if together else self.parent._task).options(
            num_cpus=max(r.threads for r in requests), resources={RESOURCE: 1}, max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.node["NodeID"], soft=False))
        try:
            if together:
                answers = ray.get(task.remote([r.to_json() for r in requests], files, memory_cap_mb, timeout_s),
                                  timeout=timeout_s + 60)
            else:
                answers = [ray.get(task.remote(requests[0].to_json(), files[0], memory_cap_mb, timeout_s),
                                   timeout=timeout_s + 60)]
        except Exception as e:  # a node that died, a task that was lost: a failed row, not a failed run
            first = str(e).strip().splitlines()[0] if str(e).strip() else "no message"
            return [Reply.failed(f"Ray node {self.node['NodeManagerAddress']} failed the measurement: "
                                 f"{type(e).__name__}: {first}")] * len(requests)
        replies = []
        for request, (reply_json, predictions) in zip(requests, answers):
            if predictions is not None and request.predictions_path:
                Path(request.predictions_path).write_bytes(predictions)
            replies.append(Reply.from_json(reply_json))
        return replies

    def close(self) -> None:
        pass
