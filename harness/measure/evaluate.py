"""Score a model (an ONNX Runtime session, or any backend's call) on evaluation images: confusion matrix and argmax predictions.

numpy only (the measurement child imports it). Task-neutral: the class axis is axis 1 of the output,
whether that output is one score per class (classification) or one logit map per class (segmentation).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Rows are true classes, columns predicted; pixels at ignore_index are left out."""
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if t.size and (t.max() >= num_classes or t.min() < 0):
        raise ValueError(f"mask holds class {int(t.max())} but the model has {num_classes} classes")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def evaluate_session(session, images: np.ndarray, targets: np.ndarray, num_classes: int, ignore_index: int,
                     output_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix and predictions over normalised NCHW images, one image per call.

    `output_shape` is one image's expected output without the batch axis; any other shape is refused.
    """
    input_name = session.get_inputs()[0].name
    return evaluate_calls(lambda batch: session.run(None, {input_name: batch})[0], images, targets, num_classes,
                          ignore_index, output_shape)


def evaluate_calls(run, images: np.ndarray, targets: np.ndarray, num_classes: int, ignore_index: int,
                   output_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """evaluate_session for any backend: `run(batch)` returns the first output of one call."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    predictions = np.zeros(targets.shape, dtype=np.uint8 if num_classes <= 256 else np.int32)
    want = (1, *output_shape)
    for i, (image, target) in enumerate(zip(images, targets)):
        logits = run(image[None])
        if tuple(logits.shape) != want:
            raise ValueError(f"model output has shape {list(logits.shape)}; expected {list(want)} "
                             f"(batch, {num_classes} classes{', height, width' if len(want) > 2 else ''})")
        if not np.isfinite(logits).all():  # argmax of NaN is class 0: such a row would look measured and merely poor
            raise ValueError(f"model output holds NaN or inf on evaluation image {i + 1} of {len(images)} "
                             f"(broken weights, or a quantization range that overflowed): not measured")
        predictions[i] = logits[0].argmax(0)
        conf += confusion_matrix(np.atleast_1d(predictions[i]), np.atleast_1d(target), num_classes, ignore_index)
    return conf, predictions
