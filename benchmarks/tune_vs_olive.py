"""Benchmark: harness tune against Olive, on the same ONNX export and the same calibration images, in one lockstep run.

1. Olive makes its models from the harness's own export of MODEL (the file `harness bench` measures as fp32):
   - `olive auto-opt --precision int8` as it is (Olive's "auto" command; for an ONNX input it plans dynamic int8);
   - `olive optimize --precision int8 --act_precision uint8 --use_qdq_format`, the plan Olive writes for static int8
     on the CPU, with its calibration data (Olive's default for this plan is a text dataset) replaced by the harness's
     calibration images, preprocessed exactly as the harness calibrates (a user-script data config).
   Each runs in its own virtual environment (`--olive-python`), as a variant maker: the harness hands it the export
   and the images, and caches the file Olive made by both.
2. `harness tune MODEL --target T` with its defaults, timed.
3. One bench run, one lockstep group: fp32, the shipped variant, tune's winner and Olive's two files, every row on
   the finalists' recipe; each file's p50 against tune's winner from the paired rounds, with its 95 % interval, and
   every row's quality, memory and verdict from the bench itself.

    python -m venv /tmp/olive-venv && /tmp/olive-venv/bin/pip install olive-ai onnxruntime onnxoptimizer tabulate
    python benchmarks/tune_vs_olive.py --target watch --model pspnet_resnet18 --olive-python /tmp/olive-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from _suites import one_model

from harness.bench import run_bench
from harness.bench.pairing import paired_ratios
from harness.data import normalize
from harness.gate.decide import decide_paired
from harness.results import RowKey
from harness.targets import with_changes
from harness.tune import TuneSettings, run_tune
from harness.tune.measure import Stage, stage_target
from harness.tune.search import default_shipped
from harness.variants.registry import VariantJob, register_variant

OLIVE_DATA = '''"""The harness's calibration images as Olive reads them: preprocessed tensors, one per item."""
import numpy as np
from olive.data.registry import Registry


class Images:
    def __init__(self, path):
        self.images = np.load(path)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {INPUT: self.images[i]}, 0


@Registry.register_dataset()
def harness_calibration(data_dir, **kwargs):
    return Images(data_dir)
'''


def olive(python: str, args: list[str], workdir: Path) -> float:
    """Run Olive's CLI in its own environment; the wall seconds it took."""
    olive_cli = str(Path(python).with_name("olive"))
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"}
    start = time.perf_counter()
    done = subprocess.run([olive_cli, *args], cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"olive {args[0]} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def output_model(folder: Path) -> Path:
    found = sorted(folder.rglob("*.onnx"))
    if len(found) != 1:
        raise RuntimeError(f"Olive wrote {len(found)} ONNX files under {folder}; expected one")
    return found[0]


def register_olive(python: str) -> None:
    """Olive's two plans as harness variants: made from the export (and images) the harness hands them."""

    @register_variant("olive-auto-opt", "olive auto-opt --precision int8, as Olive plans it")
    def make_auto_opt(job: VariantJob) -> str:
        wall_s = olive(python, ["auto-opt", "-m", str(job.exported.path), "--precision", "int8", "--device", "cpu",
                                "--provider", "CPUExecutionProvider", "-o", "out", "--save_config_file"], job.workdir)
        shutil.copyfile(output_model(job.workdir / "out"), job.out)
        return f"olive auto-opt --precision int8 (its plan: {plan_of(job.workdir / 'out')}), {wall_s:.0f} s"

    @register_variant("olive-optimize", "olive optimize --precision int8 (static, QDQ), on the harness's images",
                      needs_calibration=True)
    def make_optimize(job: VariantJob) -> str:
        import onnx

        input_name = onnx.load(str(job.exported.path), load_external_data=False).graph.input[0].name
        np.save(job.workdir / "calibration.npy", normalize(job.calibration_images))
        (job.workdir / "olive_data.py").write_text(OLIVE_DATA.replace("INPUT", repr(input_name)))
        olive(python, ["optimize", "-m", str(job.exported.path), "--precision", "int8", "--act_precision", "uint8",
                       "--use_qdq_format", "--device", "cpu", "--provider", "CPUExecutionProvider", "-o", "plan",
                       "--save_config_file", "--dry_run"], job.workdir)
        config = json.loads((job.workdir / "plan" / "config.json").read_text())
        config["data_configs"] = [{"name": "harness_calibration", "user_script": "olive_data.py",
                                   "load_dataset_config": {"type": "harness_calibration", "data_dir": "calibration.npy"},
                                   "dataloader_config": {"batch_size": 1}}]
        for step in config["passes"].values():
            if "data_config" in step:
                step.update(data_config="harness_calibration", calibration_providers=["CPUExecutionProvider"])
        config["output_dir"] = "out"
        (job.workdir / "run.json").write_text(json.dumps(config, indent=1))
        wall_s = olive(python, ["run", "--config", "run.json"], job.workdir)
        shutil.copyfile(output_model(job.workdir / "out"), job.out)
        passes = ", ".join(step["type"] for step in config["passes"].values())
        return f"olive optimize --precision int8 (its plan: {passes}) on {len(job.calibration_images)} images, {wall_s:.0f} s"


def plan_of(out: Path) -> str:
    """The passes Olive ran, from the config it saved beside its output (where it saved one)."""
    for config in out.rglob("*.json"):
        passes = json.loads(config.read_text()).get("passes")
        if isinstance(passes, dict):
            return ", ".join(step.get("type", name) for name, step in passes.items())
    return "not saved"


def cell(value, spec: str) -> str:
    return "not measured" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="watch")
    parser.add_argument("--model", default="pspnet_resnet18")
    parser.add_argument("--olive-python", required=True, help="the python of a virtual environment with olive-ai")
    args = parser.parse_args()
    suite, target, inputs = one_model(args.model, args.target)
    start = time.perf_counter()
    tuned = run_tune(suite, target, inputs, TuneSettings(), say=print)
    tune_s = time.perf_counter() - start
    if tuned.winner is None:
        print(f"tune found no winner ({tuned.stopped})")
        return 1
    register_olive(args.olive_python)  # only now: tune searches every registered variant, and must not take Olive's
    serving, shipped = target.scenario.in_children[0], default_shipped(target)
    winner = tuned.winner.candidate.renamed("tuned")
    stage = Stage("finalists", target.gate.ab_processes, target.scenario.min_duration_s, None)  # fixed: every row alike
    derived = stage_target(target, [winner], stage, serving, shipped)
    olives = ("olive-auto-opt", "olive-optimize")
    derived = with_changes(derived, variants=derived.scenario.variants + olives,
                           ship=derived.budgets.ship + olives)
    run = run_bench(suite, derived, inputs)
    by_key = {r.key: r for r in run.rows}
    key = lambda variant, backend="onnxruntime": RowKey(args.model, variant, serving, backend)  # noqa: E731
    tuned_key = key("tuned", winner.named.backend or "onnxruntime")
    print(f"\ntune: {tuned.winner.candidate.describe()}, {tune_s:.0f} s")
    print("\n| variant | how made | p50 ms | speed vs fp32 | p50 / tune's winner (95 %) | file MB | model MB | "
          "mIoU % | drop pts | verdict |\n|---|---|---|---|---|---|---|---|---|---|")
    for variant, row_key in [("fp32", key("fp32")), (shipped, key(shipped)), ("tuned", tuned_key),
                             *((o, key(o)) for o in olives)]:
        row = by_key.get(row_key)
        if row is None or row.status != "ok":
            print(f"| {variant} | | not measured: {row.status if row else 'no row'} | | | | | | | |")
            continue
        ratios = paired_ratios(run.measurements[tuned_key], run.measurements[row_key]) if row_key != tuned_key else None
        d = decide_paired(ratios.p50, target.gate.latency_tolerance_pct) if ratios is not None else None
        against = f"x{d.ratio:.3f} ({d.low:.3f}-{d.high:.3f})" if d is not None and d.low is not None else "-"
        how = tuned.winner.candidate.describe() if variant == "tuned" else row.recipe
        print(f"| {variant} | {how} | {cell(row.p50_ms, '.2f')} | x{cell(row.speedup_vs_fp32, '.2f')} | {against} | "
              f"{cell(row.file_mb, '.2f')} | {cell(row.model_mb, '.1f')} | {cell(row.quality_pct, '.2f')} | "
              f"{cell(row.quality_drop_pts, '+.2f')} | {row.verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
