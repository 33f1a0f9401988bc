"""The task protocol: a task registered from outside the package runs the whole bench with its own quality figure."""

import numpy as np
import pytest

from harness.bench import BenchInputs, run_bench
from harness.errors import HarnessError
from harness.metrics import Quality
from harness.variants.quantize import QuantizeOptions
from harness.spec import load_suite
from harness.targets import TargetProfile
from harness.tasks import get_task, list_tasks, register_task
from harness.tasks.segmentation import Segmentation

FACTORY = """
from torch import nn

def build(classes=11):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))
"""


class PixelAccuracy(Segmentation):
    """Segmentation data, scored by the share of labelled pixels right instead of mIoU."""

    name = "toy-pixel-accuracy"
    quality_metric = "pixel acc"

    def quality(self, confusion) -> Quality:
        right = float(100 * np.trace(confusion) / confusion.sum())
        return Quality(self.quality_metric, right, right, "")


@pytest.fixture
def toy_task():
    task = register_task(PixelAccuracy())
    yield task
    from harness.tasks.registry import TASKS

    TASKS.remove(task.name)


def test_builtin_tasks_and_their_output_shapes():
    assert {"segmentation", "classification"} <= set(list_tasks())
    assert get_task("segmentation").output_shape(11, (192, 240)) == (11, 192, 240)
    assert get_task("classification").output_shape(5, (64, 64)) == (5,)


def test_unknown_task_is_refused_in_one_line(tmp_path):
    from harness.spec import ModelSpec

    with pytest.raises(HarnessError, match="unknown task 'detection'"):
        ModelSpec(name="m", arch="unet_small", num_classes=2, input_hw=(32, 32), task="detection")


@pytest.mark.slow
def test_a_registered_task_scores_every_row(tmp_path, small_split, toy_task):
    (tmp_path / "toy_models.py").write_text(FACTORY)
    suite_path = tmp_path / "suite.toml"
    suite_path.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\ntask = "{toy_task.name}"\n\n'
                          f'[[model]]\nname = "toy"\nfactory = "toy_models:build"\nnum_classes = 11\n'
                          f'input_size = [184, 240]\n')
    suite = load_suite(suite_path)
    target = TargetProfile.from_flat("fast", threads=1, min_runs=3, min_duration_s=0.0, warmup_runs=1, processes=1)
    rows = run_bench(suite, target, BenchInputs(suite.data_dir, None, QuantizeOptions())).rows
    assert len(rows) == 1 and rows[0].status == "ok"
    assert rows[0].quality_metric == "pixel acc" and rows[0].quality_pct == pytest.approx(rows[0].pixel_accuracy_pct)
