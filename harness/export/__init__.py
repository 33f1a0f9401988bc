"""Export a spec's model to one self-contained ONNX file and prove it matches PyTorch.

Exports are cached by content hash (architecture, options, checkpoint bytes, tool versions), so a
second run re-uses the file and its parity proof instead of exporting again.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness import __version__
from harness.cache import cached_entry, file_sha256
from harness.errors import ExportError, HarnessError, ParityError
from harness.export.exporters import (EXPORT_PATHS, INPUT_NAME, OUTPUT_NAME, SOURCE_LOCATION_KEYS, ExportPath, export_log_path,
                               export_to_file, onnx_batch_dim, output_to, root_cause)
from harness.spec import ModelSpec

# An export is faithful when the predicted class agrees on at least this share of pixels and no
# logit moves more than MAX_ABS_LOGIT_DIFF; fp32 exports here agree on 100 % and differ by ~1e-5.
MIN_ARGMAX_AGREEMENT_PCT = 99.9
MAX_ABS_LOGIT_DIFF = 1e-2
PARITY_IMAGES = 8


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_logit_diff: float
    argmax_agreement_pct: float
    passed: bool


@dataclass(frozen=True)
class ExportedModel:
    """An ONNX file on disk plus what is known about it."""

    name: str
    path: Path
    sha256: str
    file_mb: float
    params_in_graph: int
    parity: ParityReport | None  # None: a user-supplied ONNX file has no PyTorch model to compare with
    cached: bool
    how: str = ""  # which exporter made the file, and why the ones tried before it did not


def export_key_parts(spec: ModelSpec, model) -> dict:
    """Everything that determines an export, read off the module as built: a change to any of it exports again."""
    import torch

    from harness.export.fingerprint import fingerprint
    from harness.models.factory import factory_module_name

    roots = (factory_module_name(spec),) if spec.factory is not None else ()
    return {
        "arch": spec.arch, "factory": spec.factory, "num_classes": spec.num_classes, "input_hw": list(spec.input_hw),
        "kwargs": spec.model_kwargs, "checkpoint": file_sha256(spec.checkpoint) if spec.checkpoint else None,
        "model": fingerprint(model, roots).as_key(), "export_code": _export_code_digest(),
        "torch": torch.__version__, "harness": __version__, "exporter": [p.label for p in EXPORT_PATHS],
        "stripped": list(SOURCE_LOCATION_KEYS),
        "parity": [MIN_ARGMAX_AGREEMENT_PCT, MAX_ABS_LOGIT_DIFF, PARITY_IMAGES],
    }


def _export_code_digest() -> str:
    """The harness's own exporting code: a change to how files are written is a change to every export."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def params_in_graph(onnx_path: Path) -> int:
    """Elements of the graph's initializers: the weights it really holds, plus a few shape constants.

    Counted from the export because smp builds encoder stages it never runs.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer))


def export_spec(spec: ModelSpec, parity_images: np.ndarray | None) -> ExportedModel:
    """The spec's ONNX file: the user's own, the cached export, or a fresh export proven by parity."""
    if spec.onnx is not None:
        check_onnx_input(spec.onnx, spec)
        return ExportedModel(spec.name, spec.onnx, file_sha256(spec.onnx), os.path.getsize(spec.onnx) / 1e6,
                             params_in_graph(spec.onnx), None, cached=True, how="the user's own ONNX file")
    if parity_images is None or len(parity_images) == 0:
        raise HarnessError(f"model '{spec.name}': parity needs real images; give --data a folder with images/ and masks/")
    from harness.models.checkpoint import build_model

    model = build_model(spec)  # built first: the cache key is read off the module as built

    def build(staging: Path) -> dict:
        _probe(model, spec)
        onnx_path = staging / "model.onnx"
        path, parity, tried = _export_faithfully(model, spec, onnx_path, parity_images[:PARITY_IMAGES])
        return {"sha256": file_sha256(onnx_path), "file_mb": os.path.getsize(onnx_path) / 1e6,
                "params_in_graph": params_in_graph(onnx_path), "parity": asdict(parity), "how": _how(path, tried),
                "spec": {"arch": spec.arch, "factory": spec.factory, "checkpoint": str(spec.checkpoint)}}

    from harness.models.factory import user_output_to_stderr

    with user_output_to_stderr():  # the model's forward runs in the probe and the parity check
        entry = cached_entry("exports", export_key_parts(spec, model), build)
    meta = entry.meta
    return ExportedModel(spec.name, entry.folder / "model.onnx", meta["sha256"], meta["file_mb"], meta["params_in_graph"],
                         ParityReport(**meta["parity"]), cached=entry.cached, how=meta.get("how", ""))


def _how(path: ExportPath, tried: list[tuple[ExportPath, str]]) -> str:
    """The recipe's words for how the file was made, and why the paths before it were not taken."""
    if not tried:
        return path.label
    return f"{path.label} ({'; '.join(f'{p.label} failed: {why}' for p, why in tried)})"


def _export_faithfully(model, spec: ModelSpec, onnx_path: Path, images_u8: np.ndarray):
    """The first path of EXPORT_PATHS whose file passes the checker and parity; (path, parity, failures before it).

    Each attempt's own output (torch's guard errors and tracebacks, hundreds of lines) goes to a log file;
    when every path fails, one line names the first path's real error and that file."""
    log = export_log_path(spec)
    log.parent.mkdir(parents=True, exist_ok=True)
    tried: list[tuple[ExportPath, str]] = []
    unfaithful: ParityReport | None = None
    with open(log, "w") as log_file:
        for path in EXPORT_PATHS:
            log_file.write(f"==== {path.label}\n")
            log_file.flush()
            try:
                with output_to(log_file):
                    export_to_file(model, spec, onnx_path, path)
            except Exception as e:  # torch raises any type from a user's model; the next path may still work
                import traceback

                log_file.write("".join(traceback.format_exception(e)))
                tried.append((path, root_cause(e)))
                continue
            parity = check_parity(model, onnx_path, images_u8)
            if parity.passed:
                log.unlink(missing_ok=True)  # nothing to look at: the file is faithful
                if path.batch != "static" and onnx_batch_dim(onnx_path) is not None:
                    path = dataclasses.replace(path, label=f"{path.label}, but torch fixed the batch at 1")
                return path, parity, tried
            unfaithful = unfaithful or parity
            why = (f"not faithful (argmax agreement {parity.argmax_agreement_pct:.3f}%, max |logit diff| "
                   f"{parity.max_abs_logit_diff:.2e})")
            log_file.write(why + "\n")
            tried.append((path, why))
    if unfaithful is not None:
        raise ParityError(
            f"model '{spec.name}': ONNX output differs from PyTorch on {unfaithful.images} real images "
            f"(argmax agreement {unfaithful.argmax_agreement_pct:.3f}% < {MIN_ARGMAX_AGREEMENT_PCT}% or max |logit diff| "
            f"{unfaithful.max_abs_logit_diff:.2e} > {MAX_ABS_LOGIT_DIFF:.0e}) by every exporter that ran; "
            f"the export is not faithful (details: {log})")
    raise ExportError(f"model '{spec.name}': no exporter could export it; {tried[0][0].label}: {tried[0][1]} "
                      f"(all {len(tried)} ways tried, their output in {log})")


def _probe(model, spec: ModelSpec) -> None:
    """One forward pass before exporting: a model that fails or returns the wrong kind of output says so in one line."""
    import torch

    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, *spec.input_hw))
    except ExportError:
        raise
    except HarnessError as e:  # an output the harness cannot read: that model's rows fail, like a forward that fails
        raise ExportError(str(e)) from e
    except Exception as e:  # the user's forward can fail in any way
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        hint = ("the harness calls forward with one image tensor (N,3,H,W): wrap the model so it takes one input"
                if isinstance(e, TypeError) else "check input_size and the model")
        raise ExportError(f"model '{spec.name}': forward on a 1x3x{spec.input_hw[0]}x{spec.input_hw[1]} image failed "
                          f"({type(e).__name__}: {first[:200]}); {hint}") from e


def check_parity(model, onnx_path: Path, images_u8: np.ndarray) -> ParityReport:
    """PyTorch vs ONNX Runtime on the same real images, one image at a time."""
    import onnxruntime as ort
    import torch

    from harness.data import normalize

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    max_diff, agree, total = 0.0, 0, 0
    with torch.inference_mode():
        for image in images_u8:
            x = normalize(image[None])
            expected = model(torch.from_numpy(x)).numpy()
            if not np.isfinite(expected).all():
                raise NonFiniteOutputError(
                    "the PyTorch model gives NaN or inf logits on a real image: its weights (or checkpoint) are "
                    "broken; fix them before exporting")
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            diff = np.abs(expected - got)
            max_diff = max(max_diff, float(diff.max()) if np.isfinite(diff).all() else float("inf"))
            agree += int((expected.argmax(1) == got.argmax(1)).sum())
            total += expected.argmax(1).size  # pixels, or images for a classifier
    agreement = 100.0 * agree / total
    passed = agreement >= MIN_ARGMAX_AGREEMENT_PCT and max_diff <= MAX_ABS_LOGIT_DIFF
    return ParityReport(len(images_u8), max_diff, agreement, passed)


class NonFiniteOutputError(HarnessError):
    """A model whose fp32 logits are NaN or inf on real images: bad input, refused before it is measured."""


def check_finite_outputs(onnx_path: Path, spec: ModelSpec, images_u8: np.ndarray) -> None:
    """A user's fp32 ONNX file must give finite logits on the evaluation images, or nothing it measures means anything."""
    import onnxruntime as ort

    from harness.data import normalize

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i, image in enumerate(images_u8):
        if not np.isfinite(session.run(None, {name: normalize(image[None])})[0]).all():
            raise HarnessError(f"{onnx_path} gives NaN or inf logits on evaluation image {i + 1}: its weights are "
                               f"broken; re-export model '{spec.name}' from a healthy checkpoint")


def check_onnx_input(onnx_path: Path, spec: ModelSpec) -> None:
    """A user's ONNX file must take one NCHW 3-channel image of the spec's size."""
    import onnx

    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:
        raise HarnessError(f"{onnx_path} is not a readable ONNX file ({type(e).__name__})") from e
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(inputs) != 1:
        raise HarnessError(f"{onnx_path} has {len(inputs)} inputs; the harness feeds one image tensor (N,3,H,W)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise HarnessError(f"{onnx_path} input '{inputs[0].name}' has shape {dims}; the harness feeds (N,3,H,W) images")
    if dims[0] not in (1, None):
        raise HarnessError(f"{onnx_path} input '{inputs[0].name}' has a fixed batch of {dims[0]}; export with batch 1 or a dynamic batch axis")
    want = list(spec.input_hw)
    if any(d is not None and d != w for d, w in zip(dims[2:], want)):
        raise HarnessError(f"{onnx_path} expects {dims[2]}x{dims[3]} images but model '{spec.name}' says input_size {want}; make them agree")


def check_output_shape(onnx_path: Path, spec: ModelSpec, expected: tuple[int, ...]) -> None:
    """The first output must be (batch, *expected); dims the graph leaves symbolic are not held against it."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.output[0].type.tensor_type.shape.dim]
    if not dims:
        return  # no shape recorded: the measurement child checks every real output
    want = [None, *expected]
    if len(dims) != len(want) or any(d is not None and w is not None and d != w for d, w in zip(dims, want)):
        raise HarnessError(f"model '{spec.name}' outputs shape {dims} but {spec.num_classes} classes at "
                           f"{spec.input_hw[0]}x{spec.input_hw[1]} need (N, {', '.join(map(str, expected))}); "
                           f"check num_classes, input_size and the model's last layer")


def check_onnx_loads(onnx_path: Path, spec: ModelSpec, expected: tuple[int, ...]) -> None:
    """A user's ONNX file must pass onnx.checker, open in ONNX Runtime and give outputs of the expected shape."""
    import onnx
    import onnxruntime as ort

    check_onnx_input(onnx_path, spec)
    try:
        onnx.checker.check_model(str(onnx_path))
        ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnx and ORT raise their own types: say which and what
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HarnessError(f"{onnx_path} is not a model ONNX Runtime can run ({type(e).__name__}: {first[:200]}); "
                           f"re-export it") from e
    check_output_shape(onnx_path, spec, expected)
