"""Benchmark: models nobody here wrote, end to end — export, int8-static, measurement — none aborting the others.

smp's Unet, UnetPlusPlus, FPN, DeepLabV3, DeepLabV3Plus, Linknet, MAnet, PAN and UPerNet (encoder resnet18)
and torchvision's deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large and fcn_resnet50, untrained
(no weights can be downloaded here; a fixed seed makes each export reproducible), 96x128 inputs, one
`harness bench` run at 1 thread with fp32 and int8-static. Prints, per model, the export path taken,
both p50s, the paired speed-up, the int8 file's agreement with fp32 and how calibration went. Exits 1
if any row failed. Untrained logits nearly tie, so agreement here is a lower bound of a trained model's.

    python benchmarks/model_zoo.py [--models Unet,UPerNet,...]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from _suites import bench_rows

from harness.spec import ASSETS_DIR

SMP = ["Unet", "UnetPlusPlus", "FPN", "DeepLabV3", "DeepLabV3Plus", "Linknet", "MAnet", "PAN", "UPerNet"]
TORCHVISION = ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn_resnet50"]
INPUT_HW = (96, 128)
# PAN's feature pyramid attention halves its 1/32 map three more times: it needs 256 px sides (at 96x128 its
# forward fails, and the harness says so in that model's rows).
INPUT_HW_OF = {"PAN": (256, 256)}
TARGET = """description = "model zoo: 1 thread, fp32 and int8-static"
threads = 1
variants = ["fp32", "int8-static"]
processes = 2
min_duration_s = 0.5
"""


def suite_text(models: list[str]) -> str:
    lines = [f'[data]\ndir = "{ASSETS_DIR / "camvid_val24"}"\nignore_index = 11\n',
             f'[calibration]\ndir = "{ASSETS_DIR / "camvid_train32"}"\nimages = 16\n']
    for name in models:
        factory, kwargs = (("smp_model", f'arch = "{name}"') if name in SMP else ("torchvision_model", f'name = "{name}"'))
        lines.append(f'[[model]]\nname = "{name}"\nfactory = "outside_models:{factory}"\nkwargs = {{ {kwargs} }}\n'
                     f"num_classes = 11\ninput_size = {list(INPUT_HW_OF.get(name, INPUT_HW))}\n")
    return "\n".join(lines)


def export_path(recipe: str) -> str:
    """The exporter that made the file, from the fp32 row's recipe."""
    from harness.export.exporters import EXPORT_PATHS

    how = recipe.removeprefix("the export, unchanged (")
    label = max((p.label for p in EXPORT_PATHS if how.startswith(p.label)), key=len, default=how[:80])
    return label + (", but torch fixed the batch at 1" if how.startswith(f"{label}, but torch fixed") else "")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(SMP + TORCHVISION))
    args = parser.parse_args()
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "outside_models.py").write_text((Path(__file__).parent / "outside_models.py").read_text())
        suite = folder / "suite.toml"
        suite.write_text(suite_text(models))
        (folder / "zoo.toml").write_text(TARGET)
        started = time.monotonic()
        rows = bench_rows(folder, suite, str(folder / "zoo.toml"))
        took_s = time.monotonic() - started
    by = {(r["model"], r["variant"]): r for r in rows}
    failed = [r for r in rows if r["status"] != "ok"]
    print("| model | input | export path | fp32 p50 ms | int8-static p50 ms | int8 speed-up (paired) | agreement with fp32 % | "
          "calibration |")
    print("|---|---|---|---|---|---|---|---|")
    for name in models:
        fp32, int8 = by.get((name, "fp32")), by.get((name, "int8-static"))
        hw = "x".join(map(str, INPUT_HW_OF.get(name, INPUT_HW)))
        if fp32 is None or fp32["status"] != "ok":
            print(f"| {name} | {hw} | failed: {fp32['status'][:160] if fp32 else 'no row'} | | | | | |")
            continue
        fell_back = re.search(r"(\d+) tensor\(s\) calibrated by MinMax", int8["recipe"]) if int8 else None
        calibration = f"{fell_back.group(1)} tensors by MinMax (histogram failed)" if fell_back else "Percentile"
        if int8 is None or int8["status"] != "ok":
            print(f"| {name} | {hw} | {export_path(fp32['recipe'])} | {float(fp32['p50_ms']):.2f} | failed: "
                  f"{int8['status'][:120] if int8 else 'no row'} | | | |")
            continue
        print(f"| {name} | {hw} | {export_path(fp32['recipe'])} | {float(fp32['p50_ms']):.2f} | {float(int8['p50_ms']):.2f} | "
              f"{float(int8['speedup_vs_fp32']):.2f}x | {float(int8['agreement_with_fp32_pct']):.1f} | {calibration} |")
    first = rows[0]
    print(f"\n{len(models)} models, {len(rows)} rows, {len(failed)} failed, one run of {took_s:.0f} s; "
          f"machine: {first['cpu_model']} ({first['cpu_isa']}), onnxruntime {first['ort_version']}, 1 thread, "
          f"{INPUT_HW[0]}x{INPUT_HW[1]} unless the table says otherwise")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
