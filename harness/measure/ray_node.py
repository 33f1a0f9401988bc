"""The Ray node's side of `harness bench --cluster`: a request's files into a scratch folder, a local child (or
lockstep children) measures them, the replies and predictions go back. Shipped with the job (runtime_env py_modules)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from harness.measure.protocol import Request

STAGED = ("onnx_path", "sample_path", "eval_path", "reference_path")  # the files a request names, sent by object store


def measure_on_node(request_json: str, files: dict, memory_cap_mb: float | None, timeout_s: float):
    """Runs on the node: write the files to a scratch folder, measure with a local child, say where."""
    return measure_together_on_node([request_json], [files], memory_cap_mb, timeout_s, together=False)[0]


def measure_together_on_node(requests_json: list[str], files: list[dict], memory_cap_mb: float | None, timeout_s: float,
                             together: bool = True):
    """Runs on the node: the requests' files to a scratch folder, lockstep children (or one child), replies."""
    import platform

    from harness.measure.local import ChildProcesses

    import ray

    folder = Path(tempfile.mkdtemp(prefix="harness-node-"))
    try:
        requests = []
        for index, (request_json, refs) in enumerate(zip(requests_json, files)):
            request, local = Request.from_json(request_json), {}
            for field, ref in refs.items():  # refs inside a dict are not resolved by Ray: fetch each file here
                path = folder / f"{index}_{field}_{Path(getattr(request, field)).name}"
                if not path.exists():
                    path.write_bytes(ray.get(ref))
                local[field] = str(path)
            if request.predictions_path:
                local["predictions_path"] = str(folder / f"predictions_{index}.npy")
            requests.append(dataclasses.replace(request, **local))
        runner = ChildProcesses()
        replies = runner.run_together(requests, memory_cap_mb, timeout_s) if together \
            else [runner.run(requests[0], memory_cap_mb, timeout_s)]
        where = f"ray node {_node_id()[:12]} ({platform.node()})"
        out = []
        for request, reply in zip(requests, replies):
            predictions = None
            if reply.ok and request.predictions_path and os.path.isfile(request.predictions_path):
                predictions = Path(request.predictions_path).read_bytes()
            out.append((dataclasses.replace(reply, measured_on=where).to_json(), predictions))
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()

