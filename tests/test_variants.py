"""The variant registry: a variant registered from outside the package is made, cached and measured like the built-ins."""

import shutil

import onnx
import pytest

from harness.bench import BenchInputs, run_bench
from harness.errors import HarnessError
from harness.variants.quantize import QuantizeOptions
from harness.spec import load_suite
from harness.targets import TargetProfile
from harness.variants import get_variant, list_variants, register_variant, variant_of


@pytest.fixture
def toy_variant():
    """A variant no harness module knows: the export with its weights rounded to 3 decimals."""
    import numpy as np
    from onnx import numpy_helper

    @register_variant("toy-rounded", "weights rounded to 3 decimals")
    def make(job):
        model = onnx.load(str(job.exported.path))
        for i, init in enumerate(model.graph.initializer):
            array = numpy_helper.to_array(init)
            if array.dtype == np.float32:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.round(array, 3), init.name))
        onnx.save(model, str(job.out))
        return "toy: weights rounded to 3 decimals"

    yield "toy-rounded"
    from harness.variants.registry import VARIANTS

    VARIANTS.remove("toy-rounded")


def test_builtin_variants_are_registered():
    assert list_variants()[:4] == ["fp32", "int8-static", "int8-dynamic", "fp16"]
    assert get_variant("int8-static").needs_calibration and not get_variant("fp16").needs_calibration


def test_unknown_variant_suggests_close_names():
    with pytest.raises(HarnessError, match="did you mean int8-static"):
        get_variant("int8-statc")


@pytest.mark.slow
def test_a_registered_variant_is_benched_beside_fp32(tiny_suite, toy_variant):
    suite = load_suite(tiny_suite)
    target = TargetProfile.from_flat("fast", threads=1, variants=("fp32", toy_variant), min_runs=3,
                                     min_duration_s=0.0, warmup_runs=1, processes=1)
    rows = run_bench(suite, target, BenchInputs(suite.data_dir, None, QuantizeOptions())).rows
    by_variant = {r.variant: r for r in rows}
    assert set(by_variant) == {"fp32", toy_variant}
    toy = by_variant[toy_variant]
    assert toy.status == "ok" and toy.recipe == "toy: weights rounded to 3 decimals"
    assert toy.p50_ms > 0 and toy.quality_pct is not None and toy.agreement_with_fp32_pct > 90


def test_a_registered_variant_is_cached(tmp_path, toy_variant):
    from harness.export import ExportedModel
    from harness.bench.yardsticks import reference_model

    path = reference_model(tmp_path / "ref.onnx")
    exported = ExportedModel("ref", path, "sha-of-ref", path.stat().st_size / 1e6, 0, None, True)
    first = variant_of(exported, toy_variant, QuantizeOptions(), None)
    again = variant_of(exported, toy_variant, QuantizeOptions(), None)
    assert not first.cached and again.cached and again.path == first.path
    shutil.copyfile(first.path, tmp_path / "copy.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "copy.onnx")))
