"""Benchmark: do the zoo's reduction recipes deliver what the README claims? (issue: reduction recipes)

Measures the shipped baseline (pspnet_resnet18), its 30 %-pruned child and the distilled factorized
student in one `harness bench` run at 1 thread (the watch profile, fp32 only, models measured in
alternating rounds), on the full CamVid val split when it is there (101 frames), else on the shipped
24 frames. Checks, all from that one run:
  - pruned: ONNX file smaller than the parent's by at least the pruned fraction minus 5 points,
    and lower p50 latency;
  - distilled student: mIoU within 2 points of its teacher and p50 at least 2x faster.
Prints the figures; exits 1 if a claim fails.

    python benchmarks/zoo_claims.py [--data ../shared/data/camvid] [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _suites import bench_rows, subset_suite

PRUNED_FRACTION, FILE_SLACK_PTS = 0.30, 5.0
MAX_STUDENT_DROP_PTS, MIN_STUDENT_SPEEDUP = 2.0, 2.0
BASELINE, PRUNED, STUDENT = "pspnet_resnet18", "pspnet_resnet18_pruned30", "pspnet_resnet18_factorized_distilled"


def one_run(data_dir: Path | None) -> dict[str, dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite = subset_suite(folder, [BASELINE, PRUNED, STUDENT], data_dir)
        target = folder / "one_thread.toml"
        target.write_text('description = "watch profile, fp32 only"\nthreads = 1\nvariants = ["fp32"]\n'
                          "enable_cpu_mem_arena = true\nenable_mem_pattern = false\n")
        return {r["model"]: r for r in bench_rows(folder, suite, str(target))}


def main() -> int:
    parser = argparse.ArgumentParser()
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"
    parser.add_argument("--data", type=Path, default=default_data if default_data.is_dir() else None,
                        help="dataset root whose val/ split is scored (default: ../shared/data/camvid if present)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    failures = 0
    for i in range(args.repeat):
        rows = one_run(args.data)
        base, pruned, student = rows[BASELINE], rows[PRUNED], rows[STUDENT]
        f = lambda row, key: float(row[key])  # noqa: E731
        file_cut_pct = 100 * (1 - f(pruned, "file_mb") / f(base, "file_mb"))
        need_cut = 100 * PRUNED_FRACTION - FILE_SLACK_PTS
        pruned_ok = file_cut_pct >= need_cut and f(pruned, "p50_ms") < f(base, "p50_ms")
        drop = f(base, "quality_pct") - f(student, "quality_pct")
        speedup = f(base, "p50_ms") / f(student, "p50_ms")
        student_ok = drop <= MAX_STUDENT_DROP_PTS and speedup >= MIN_STUDENT_SPEEDUP
        failures += not (pruned_ok and student_ok)
        print(f"run {i + 1} ({base['eval_images']} val frames, 1 thread):")
        print(f"  baseline {BASELINE}: {f(base, 'file_mb'):.2f} MB, p50 {f(base, 'p50_ms'):.2f} ms, "
              f"mIoU {f(base, 'quality_pct'):.2f} %")
        print(f"  pruned   {PRUNED}: {f(pruned, 'file_mb'):.2f} MB ({file_cut_pct:.0f} % smaller, need >= {need_cut:.0f}), "
              f"p50 {f(pruned, 'p50_ms'):.2f} ms (need < {f(base, 'p50_ms'):.2f}), mIoU {f(pruned, 'quality_pct'):.2f} %: "
              f"{'OK' if pruned_ok else 'FAILED'}")
        print(f"  student  {STUDENT}: {f(student, 'file_mb'):.2f} MB, p50 {f(student, 'p50_ms'):.2f} ms "
              f"({speedup:.2f}x, need >= {MIN_STUDENT_SPEEDUP}), mIoU {f(student, 'quality_pct'):.2f} % "
              f"(drop {drop:.2f}, need <= {MAX_STUDENT_DROP_PTS}): {'OK' if student_ok else 'FAILED'}")
        print(f"  machine: {base['cpu_model']} ({base['cpu_isa']}), ORT {base['ort_version']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
