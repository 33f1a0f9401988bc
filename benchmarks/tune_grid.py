"""Benchmark: harness tune against the exhaustive grid of the same space, on one model and target.

0. Every file of the space made once, untimed: both are timed on measurement alone.
1. The grid: every point of the space (`Space.every_point`) screened exactly as tune screens (batches of 6 beside
   fp32, paired p50 against fp32, quality on 8 images, the target's budgets); the best 3 that fit measured as tune
   measures its finalists, beside the shipped variant; the grid's best is the fastest of those.
2. `harness tune` with its defaults (24 candidates), timed.
3. The two winners in one lockstep group (the finalists' recipe): tune's p50 over the grid's, paired, with its
   95 % interval. The issue's bar: tune within 5 % of the grid's best, in at most a quarter of the grid's time.

    python benchmarks/tune_grid.py --target watch --model pspnet_resnet18
"""

from __future__ import annotations

import argparse
import time

from _suites import one_model

from harness.targets import with_changes
from harness.tune import TuneSettings, build_space, run_tune
from harness.tune.measure import Stage, measure_stage
from harness.tune.search import default_shipped, finalists_stage
from harness.tune.space import candidate


def warm(suite, target, inputs, settings: TuneSettings, say) -> int:
    """Every file of the space made once, untimed (each measured once, briefly): the grid and tune are then both
    timed on measurement alone, neither paying for files the other made."""
    start, files = time.perf_counter(), {}
    for i, point in enumerate(build_space(target).every_point(), 1):
        c = candidate(f"w{i:03d}", *point)
        files.setdefault((c.named.base, c.named.quantize), c)
    points = list(files.values())
    for first in range(0, len(points), settings.batch):
        measure_stage(suite, target, inputs, points[first:first + settings.batch], Stage("warm", 1, 0.0, 1),
                      target.scenario.in_children[0], None)
    say(f"warm: {len(points)} distinct files made, {time.perf_counter() - start:.0f} s (not counted)")
    return len(points)


def grid(suite, target, inputs, settings: TuneSettings, say) -> tuple[object, float, int]:
    """Every point screened, the best 3 measured as finalists: (the grid's best Measured, wall s, points)."""
    start = time.perf_counter()
    space = build_space(target)
    points = [candidate(f"g{i:03d}", *p) for i, p in enumerate(space.every_point(), 1)]
    screen = Stage("screen", 2, min(target.scenario.min_duration_s, 0.5), settings.screen_images)
    screened = []
    for first in range(0, len(points), settings.batch):
        run = measure_stage(suite, target, inputs, points[first:first + settings.batch], screen,
                            target.scenario.in_children[0], None)
        screened += run.measured.values()
        say(f"grid: {min(first + settings.batch, len(points))}/{len(points)} screened, {time.perf_counter() - start:.0f} s")
    fitting = sorted((m for m in screened if not m.rejected and m.value("p50")), key=lambda m: -m.value("p50"))
    shipped = default_shipped(target)
    finals = measure_stage(suite, target, inputs, [m.candidate for m in fitting[:settings.finalists]],
                           finalists_stage(target, settings),
                           target.scenario.in_children[0], shipped)
    best = min((m for m in finals.measured.values() if not m.rejected and (m.is_shipped or m.vs_shipped is not None)),
               key=lambda m: 1.0 if m.is_shipped else m.vs_shipped.ratio)  # as tune picks its winner
    return best, time.perf_counter() - start, len(points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="watch")
    parser.add_argument("--model", default="pspnet_resnet18")
    args = parser.parse_args()
    suite, target, inputs = one_model(args.model, args.target)
    settings = TuneSettings()
    warm(suite, target, inputs, settings, print)
    best, grid_s, size = grid(suite, target, inputs, settings, print)
    start = time.perf_counter()
    tuned = run_tune(suite, target, inputs, settings, say=print)
    tune_s = time.perf_counter() - start
    if tuned.winner is None:
        print(f"tune found no winner ({tuned.stopped}); the grid's best: {best.candidate.describe()}")
        return 1
    serving = target.scenario.in_children[0]
    grid_named = best.candidate.renamed("grid").named  # the grid's best as a named variant: the finalists' anchor
    beside = with_changes(target, named_variants=target.scenario.named_variants + (grid_named,))
    final = measure_stage(suite, beside, inputs, [tuned.winner.candidate.renamed("tuned")],
                          finalists_stage(target, settings), serving, "grid")  # until tune / grid is decided at 5 %
    d = final.measured["tuned"].vs_shipped  # None: the very same settings, measured once
    print("\n| | configuration | wall s | candidates measured |\n|---|---|---|---|")
    print(f"| grid | {best.candidate.describe()} | {grid_s:.0f} | {size} |")
    print(f"| tune | {tuned.winner.candidate.describe()} | {tune_s:.0f} | {len(tuned.measured)} |")
    if d is None:
        print("\ntune's winner is the grid's best: the same settings (one file, one set of options)")
        print(f"tune's time: {100 * tune_s / grid_s:.1f} % of the grid's (the bar: at most 25 %)")
        return 0
    same = " (the same configuration)" if tuned.winner.candidate.key == best.candidate.key else ""
    print(f"\ntune's p50 / the grid's best's, paired in one lockstep group{same}: x{d.ratio:.3f} (95 % interval "
          f"x{d.low:.3f}-x{d.high:.3f}): {'within' if d.ratio <= 1.05 else 'NOT within'} 5 %"
          f"{' (the whole interval too)' if d.high <= 1.05 else ''}")
    print(f"tune's time: {100 * tune_s / grid_s:.1f} % of the grid's (the bar: at most 25 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
