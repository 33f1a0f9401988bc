"""Accuracy-aware fallback for int8-static: leave the fewest nodes in float until the mIoU drop fits.

What Intel Neural Compressor does, without its weight: rank each quantized node by how much mIoU
comes back when that node alone stays float, add nodes in that order until the drop is within the
limit, then try to remove each again. All of it is scored on the calibration images (with their
masks), never on the evaluation images the report is judged on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.export import ExportedModel, cache_dir
from harness.quantize import QuantizeOptions, calibrate, preprocess, quantize_static_with

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
    key = hashlib.sha256(json.dumps({
        "sha": exported.sha256, "options": dataclasses.asdict(options), "drop": max_drop_pts, "task": task,
        "images": hashlib.sha256(images_u8.tobytes() + masks.tobytes()).hexdigest(),
    }, sort_keys=True).encode()).hexdigest()[:20]
    record = cache_dir() / "fallback" / f"{key}.json"
    if record.is_file():
        data = json.loads(record.read_text())
        return FallbackResult(**{**data, "nodes_in_float": tuple(data["nodes_in_float"])})

    import onnxruntime as ort

    from harness.data import normalize
    from harness.worker import evaluate_session

    images = normalize(images_u8)
    say = on_progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="harness-fallback-") as tmp:
        workdir = Path(tmp)
        pre, _ = preprocess(exported.path, workdir)
        ranges = calibrate(pre, images_u8[:options.calibration_images], options, exported.sha256,
                           lambda done, total: say(f"calibrating {done}/{total}"))
        trials = 0

        def miou(path: Path) -> float:
            from harness.metrics import quality_from_confusion

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            conf, _ = evaluate_session(session, images, masks, num_classes, ignore_index)
            return quality_from_confusion(conf, task).pct

        def quantized_miou(excluded: tuple[str, ...]) -> float:
            nonlocal trials
            trials += 1
            out = workdir / "trial.onnx"
            quantize_static_with(pre, out, ranges, dataclasses.replace(options, nodes_to_exclude=excluded))
            return miou(out)

        say("scoring fp32 and all-int8")
        fp32 = miou(exported.path)
        all_int8 = quantized_miou(())
        chosen: tuple[str, ...] = ()
        best = all_int8
        if fp32 - all_int8 > max_drop_pts:
            quantize_static_with(pre, workdir / "all.onnx", ranges, options)
            candidates = quantized_nodes(workdir / "all.onnx")
            gains = []
            for i, node in enumerate(candidates, 1):
                say(f"sensitivity of node {i}/{len(candidates)}: {node}")
                gains.append((quantized_miou((node,)) - all_int8, node))
            ranked = [node for gain, node in sorted(gains, key=lambda g: (-g[0], g[1]))]
            for node in ranked:
                chosen += (node,)
                say(f"{len(chosen)} node(s) in float")
                best = quantized_miou(chosen)
                if fp32 - best <= max_drop_pts:
                    break
            if fp32 - best <= max_drop_pts:
                for node in list(chosen):  # backward pass: drop any node the limit does not need
                    fewer = tuple(n for n in chosen if n != node)
                    score = quantized_miou(fewer)
                    if fp32 - score <= max_drop_pts:
                        chosen, best = fewer, score
    result = FallbackResult(chosen, fp32, all_int8, best, max_drop_pts, fp32 - best <= max_drop_pts, trials)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp_record = record.with_suffix(".tmp")
    tmp_record.write_text(json.dumps(dataclasses.asdict(result), indent=2))
    os.replace(tmp_record, record)
    return result


def quantized_nodes(qdq_model: Path) -> list[str]:
    """Nodes of a QDQ model that read a dequantized tensor: the ones quantization actually touched."""
    import onnx

    graph = onnx.load(str(qdq_model)).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return [n.name for n in graph.node if n.op_type not in QDQ_OPS and any(i in dequantized for i in n.input)]
