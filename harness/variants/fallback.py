"""Accuracy-aware fallback for int8-static: leave the fewest nodes in float until the mIoU drop fits.

What Intel Neural Compressor does, without its weight: rank each quantized node by how much mIoU
comes back when that node alone stays float, add nodes in that order until the drop is within the
limit, then try to remove each again. All of it is scored on the calibration images (with their
masks), never on the evaluation images the report is judged on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.cache import cached_entry
from harness.data import normalize
from harness.measure.evaluate import evaluate_session
from harness.export import ExportedModel
from harness.variants.quantize import QuantizeOptions, calibrate, preprocess, quantize_static_with
from harness.tasks import get_task

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


@dataclass(frozen=True)
class FallbackResult:
    nodes_in_float: tuple[str, ...]
    fp32_miou_pct: float  # on the tuning (calibration) images
    int8_miou_pct: float  # all nodes quantized
    final_miou_pct: float
    max_drop_pts: float
    reached: bool
    trials: int

    def describe(self) -> str:
        verdict = "reached" if self.reached else "NOT reached by any fallback set tried"
        return (f"fallback to within {self.max_drop_pts:g} quality pts {verdict} on the calibration images: "
                f"fp32 {self.fp32_miou_pct:.2f}%, all-int8 {self.int8_miou_pct:.2f}%, with {len(self.nodes_in_float)} "
                f"node(s) in float {self.final_miou_pct:.2f}% ({self.trials} trial quantizations)")


def find_fallback(exported: ExportedModel, options: QuantizeOptions, images_u8: np.ndarray, masks: np.ndarray,
                  num_classes: int, ignore_index: int, max_drop_pts: float,
                  on_progress: Callable[[str], None] | None = None, task: str = "segmentation") -> FallbackResult:
    """The smallest set of nodes to keep in float found by sensitivity ranking; cached."""
    parts = {"sha": exported.sha256, "options": dataclasses.asdict(options), "drop": max_drop_pts, "task": task,
             "images": hashlib.sha256(images_u8.tobytes() + masks.tobytes()).hexdigest()}
    say = on_progress or (lambda message: None)

    def build(staging: Path) -> dict:
        search = _Search(exported, options, images_u8, masks, num_classes, ignore_index, get_task(task), staging, say)
        return dataclasses.asdict(search.run(max_drop_pts))

    data = cached_entry("fallback", parts, build).meta
    return FallbackResult(**{**data, "nodes_in_float": tuple(data["nodes_in_float"])})


class _Search:
    """One fallback search: scores quantized trials of the model on the calibration images."""

    def __init__(self, exported, options, images_u8, masks, num_classes, ignore_index, task, workdir: Path, say):
        self.exported, self.options, self.masks, self.task = exported, options, masks, task
        self.num_classes, self.ignore_index, self.workdir, self.say = num_classes, ignore_index, workdir, say
        self.images = normalize(images_u8)
        self.pre, _ = preprocess(exported.path, workdir)
        self.ranges = calibrate(self.pre, images_u8[:options.calibration_images], options, exported.sha256,
                                lambda done, total: say(f"calibrating {done}/{total}"))
        self.trials = 0

    def quality(self, path: Path) -> float:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shape = self.task.output_shape(self.num_classes, self.images.shape[2:])
        conf, _ = evaluate_session(session, self.images, self.masks, self.num_classes, self.ignore_index, shape)
        return self.task.quality(conf).pct

    def quantized(self, excluded: tuple[str, ...]) -> float:
        self.trials += 1
        out = self.workdir / "trial.onnx"
        quantize_static_with(self.pre, out, self.ranges, dataclasses.replace(self.options, nodes_to_exclude=excluded))
        return self.quality(out)

    def run(self, max_drop_pts: float) -> FallbackResult:
        self.say("scoring fp32 and all-int8")
        fp32 = self.quality(self.exported.path)
        all_int8 = self.quantized(())
        chosen: tuple[str, ...] = ()
        best = all_int8
        if fp32 - all_int8 > max_drop_pts:
            chosen, best = self._forward(fp32, all_int8, max_drop_pts)
            if fp32 - best <= max_drop_pts:
                chosen, best = self._backward(chosen, best, fp32, max_drop_pts)
        return FallbackResult(chosen, fp32, all_int8, best, max_drop_pts, fp32 - best <= max_drop_pts, self.trials)

    def _forward(self, fp32: float, all_int8: float, max_drop_pts: float) -> tuple[tuple[str, ...], float]:
        """Rank nodes by how much quality comes back with each alone in float; add them in that order."""
        quantize_static_with(self.pre, self.workdir / "all.onnx", self.ranges, self.options)
        candidates = quantized_nodes(self.workdir / "all.onnx")
        gains = []
        for i, node in enumerate(candidates, 1):
            self.say(f"sensitivity of node {i}/{len(candidates)}: {node}")
            gains.append((self.quantized((node,)) - all_int8, node))
        chosen: tuple[str, ...] = ()
        best = all_int8
        for _, node in sorted(gains, key=lambda g: (-g[0], g[1])):
            chosen += (node,)
            self.say(f"{len(chosen)} node(s) in float")
            best = self.quantized(chosen)
            if fp32 - best <= max_drop_pts:
                break
        return chosen, best

    def _backward(self, chosen, best: float, fp32: float, max_drop_pts: float) -> tuple[tuple[str, ...], float]:
        """Drop any node in float that the limit does not need."""
        for node in list(chosen):
            fewer = tuple(n for n in chosen if n != node)
            score = self.quantized(fewer)
            if fp32 - score <= max_drop_pts:
                chosen, best = fewer, score
        return chosen, best


def quantized_nodes(qdq_model: Path) -> list[str]:
    """Nodes of a QDQ model that read a dequantized tensor: the ones quantization actually touched."""
    import onnx

    graph = onnx.load(str(qdq_model)).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return [n.name for n in graph.node if n.op_type not in QDQ_OPS and any(i in dequantized for i in n.input)]
