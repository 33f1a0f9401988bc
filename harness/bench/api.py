"""`harness.bench(...)`: the bench pipeline from Python, for a suite or a torch.nn.Module in memory (no TOML needed)."""

from __future__ import annotations

from pathlib import Path

from harness.bench.pipeline import BenchPipeline, BenchResult
from harness.errors import HarnessError


def bench(model, target="watch", *, data=None, name: str = "model", num_classes: int | None = None,
          input_size: tuple[int, int] | None = None, ignore_index: int = 255, calibration_data=None,
          results_dir=None, update: bool = False, max_miou_drop: float | None = None, console=None) -> BenchResult:
    """Measure `model` (a torch.nn.Module, a suite TOML path or a Suite) under `target` (a name, a .toml path or a
    TargetProfile); the typed rows and the gate's decisions. With `results_dir`, written and gated as the CLI does.

        result = harness.bench(net, "watch", data="camvid/val", num_classes=11, input_size=(192, 240))
        print(result.passed, [(r.variant, r.p50_ms, r.quality_pct) for r in result.rows])
    """
    from harness.bench.plan import BenchInputs, default_data_dir
    from harness.targets import TargetProfile, load_target
    from harness.variants.quantize import default_options

    suite = _suite(model, data, name, num_classes, input_size, ignore_index)
    target = target if isinstance(target, TargetProfile) else load_target(str(target))
    calibration = Path(calibration_data) if calibration_data else suite.calibration_dir
    options = default_options(calibration_method=suite.calibration_method, calibration_images=suite.calibration_images,
                              activation_type=None, keep_output_float=None)
    inputs = BenchInputs(default_data_dir(suite, str(data) if data else None), calibration, options, max_miou_drop)
    pipeline = BenchPipeline(suite, target, inputs, Path(results_dir) if results_dir else None, update, console=console)
    return pipeline.run()


def _suite(model, data, name: str, num_classes: int | None, input_size, ignore_index: int):
    """A Suite as given or read from its TOML, or one model in memory with its evaluation data."""
    from harness.files import check_name
    from harness.spec import ModelSpec, Suite, load_suite

    if isinstance(model, Suite):
        return model
    if isinstance(model, (str, Path)):
        return load_suite(model)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise HarnessError(f"harness.bench takes a torch.nn.Module, a suite TOML path or a Suite, not {type(model).__name__}")
    if data is None or num_classes is None or input_size is None:
        raise HarnessError("a module in memory needs data= (a folder with images/ and masks/), num_classes= and "
                           "input_size=(height, width)")
    spec = ModelSpec(name=check_name("model", name, "harness.bench"), num_classes=int(num_classes),
                     input_hw=tuple(int(v) for v in input_size), module=model)
    return Suite(Path.cwd() / f"{name} (in memory)", (spec,), Path(data), ignore_index)
