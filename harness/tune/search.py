"""The search, cheap to expensive: Optuna proposes, short paired screens drop the losing and over-budget candidates,
survivors are measured longer on every evaluation image, and the finalists beside the shipped variant in one
lockstep group, so the winner's margin is a same-run ratio with its interval.

Why Optuna (TPE, ask-and-tell): the space is conditional (int8 settings only for a calibrated variant, session
options per runtime) and far larger than a screening budget; TPE with `constant_liar` proposes a batch at a time
(one lockstep group), trial constraints steer it away from over-budget regions without discarding what they
measured, and a seed makes the proposals repeatable. What Optuna does not do, the harness does: every value it is
told is a ratio paired against fp32 in the same cycles, so batches measured minutes apart on a drifting host
compare.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness.bench import BenchInputs
from harness.errors import HarnessError
from harness.report.tune import objective_figure, stage_line
from harness.spec import Suite
from harness.targets import TargetProfile
from harness.tune.measure import OBJECTIVES, Measured, Stage, StageRun
from harness.tune.screen import Stopped, check_time, measure_stage_of, screen
from harness.tune.space import Candidate, Space, build_space, in_space, point_of


@dataclass(frozen=True)
class TuneSettings:
    """How much to search, and for what."""

    trials: int = 24  # distinct candidates screened at most
    batch: int = 6  # candidates screened together, in one lockstep group with fp32
    survivors: int = 6  # measured again, longer, on every evaluation image
    finalists: int = 3  # measured beside the shipped variant: the winner's margin
    screen_images: int = 8  # evaluation images a screen scores quality on
    objective: str = "p50"  # p50 (paired speed-up), p95, memory, throughput
    min_gain_pct: float = 5.0  # the winner replaces the shipped variant only when faster by this, interval and all
    time_limit_s: float | None = None  # stop before a stage that would start after this; report what was measured
    seed: int = 0
    serving: str = ""  # the serving mode measured ("": the target's first measured in children)
    backends: tuple[str, ...] = ()  # the runtimes searched (): every installed one
    shipped: str = ""  # the variant the winner must beat ("": the target's first shipped one)
    cluster: str = ""  # a Ray cluster's address: screening batches side by side, one per node

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise HarnessError(f"--objective {self.objective}; use one of {', '.join(OBJECTIVES)}")
        if min(self.trials, self.batch, self.survivors, self.finalists, self.screen_images) < 1:
            raise HarnessError("--trials, --batch, --survivors, --finalists and --screen-images must be at least 1")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise HarnessError(f"--time-limit {self.time_limit_s:g}; give seconds above 0")


@dataclass
class TuneResult:
    """Everything a search measured, at the last stage each candidate reached, and what it concluded."""

    model: str
    target: TargetProfile
    settings: TuneSettings
    space: Space
    shipped: str
    serving: str
    measured: dict[str, Measured] = field(default_factory=dict)
    stages: dict[str, StageRun] = field(default_factory=dict)  # the last run of each stage
    stage_wall_s: dict[str, float] = field(default_factory=dict)  # each stage's runs together
    winner: Measured | None = None
    stopped: str = ""  # why the search was cut short; "" it ran to the end
    wall_s: float = 0.0
    trials_asked: int = 0
    runner: object | None = None  # a Ray cluster's runner, while the search runs
    previous: Candidate | None = None  # the last search's winner (its CSV), searched again: same winner, or a tie?
    against_previous: object | None = None  # PairedDecision: this winner / the last one's, paired in the finalists

    @property
    def places(self) -> int:
        """Where screening batches run side by side: a cluster's nodes; here, one."""
        return getattr(self.runner, "places", 1) if self.runner is not None else 1

    @property
    def beats_shipped(self) -> bool:
        """Whether the winner beats the shipped variant on the objective by the minimum gain: p50 (and images/s) or
        p95 faster with the whole paired interval, or memory lower by the gain (one figure each, same group)."""
        if self.winner is None:
            return False
        gain = self.settings.min_gain_pct / 100
        if self.settings.objective == "memory":
            from harness.tune.measure import memory_of

            shipped = memory_of(self.stages["finalists"].shipped, self.target) if "finalists" in self.stages else None
            return shipped is not None and self.winner.memory_mb is not None and \
                self.winner.memory_mb <= shipped * (1 - gain)
        decision = self.winner.p95_vs_shipped if self.settings.objective == "p95" else self.winner.vs_shipped
        if decision is None or decision.high is None:
            return False
        return decision.high < 1 and 1 / decision.ratio - 1 >= gain


def default_shipped(target: TargetProfile) -> str:
    """The variant a tuned one must beat: the target's first shipped variant, else int8-static, else fp32."""
    if target.budgets.ship:
        return target.budgets.ship[0]
    return "int8-static" if "int8-static" in target.scenario.variants else "fp32"


def run_tune(suite: Suite, target: TargetProfile, inputs: BenchInputs, settings: TuneSettings, console=None,
             say=print, previous: Candidate | None = None) -> TuneResult:
    """Search the space for `suite`'s one model on `target`; cut short (time limit, Ctrl-C), it returns what it had."""
    if len(suite.models) != 1:
        raise HarnessError("harness tune searches one model at a time; name it (harness tune MODEL)")
    serving = settings.serving or target.scenario.in_children[0] if target.scenario.in_children else ""
    if serving not in target.scenario.in_children:
        raise HarnessError(f"{target.where} measures no serving mode {settings.serving or ''} in its children; "
                           f"use --serving one of {', '.join(target.scenario.in_children) or 'batched'}")
    shipped = settings.shipped or default_shipped(target)
    target.scenario.variant(shipped)  # an unknown name fails here, in one line
    space = build_space(target, settings.backends, calibration=inputs.calibration_dir is not None)
    if not space.variants or not all(space.variants.values()):
        raise HarnessError(f"nothing to search: {'; '.join(space.notes) or 'no backend reads ONNX files here'}; "
                           f"name an installed runtime with --backend (onnxruntime, openvino)")
    result = TuneResult(suite.models[0].name, target, settings, space, shipped, serving)
    if previous is not None and in_space(space, point_of(previous)):
        result.previous = previous
    started = time.perf_counter()
    deadline = started + settings.time_limit_s if settings.time_limit_s else None
    if settings.cluster:
        from harness.runners import make_runner

        result.runner = make_runner(target, settings.cluster)
        result.runner.check_target(target)  # connected once; its nodes are the screening batches' places
    try:
        screened = screen(suite, target, inputs, result, console, say, deadline)
        survivors = _advance(result, screened, settings.survivors, "screen", _previous_of(result, screened))
        if survivors:
            check_time(deadline, "the survivors stage")
            # The table recipe (the target's processes, `table_duration_s` each: what the bench gives a row no A/B
            # judges) on every image: enough to rank survivors; the finalists get the A/B recipe.
            stage = Stage("survivors", target.scenario.processes, target.scenario.table_duration_s, None)
            run = measure_stage_of(suite, target, inputs, result, survivors, stage, console)
            say(stage_line(result, run, "survivors"))
            kept = [result.measured[c.name] for c in survivors]
            finalists = _advance(result, kept, settings.finalists, "survivors", _previous_of(result, kept))
            if finalists:
                check_time(deadline, "the finalists stage")
                stage = finalists_stage(target, settings)
                run = measure_stage_of(suite, target, inputs, result, finalists, stage, console)
                say(stage_line(result, run, "finalists"))
                result.winner = _winner(result, [result.measured[c.name] for c in finalists])
                result.against_previous = _against_previous(result, run, [result.measured[c.name] for c in finalists])
    except Stopped as e:
        result.stopped = str(e)
    except KeyboardInterrupt:
        result.stopped = "interrupted (Ctrl-C)"
    finally:
        if result.runner is not None:
            result.runner.close()
    result.wall_s = time.perf_counter() - started
    return result


def finalists_stage(target: TargetProfile, settings: TuneSettings) -> Stage:
    """The finalists' recipe: the A/B's children (`min_duration_s` each), 3 rounds (the rank test's least), then one
    more at a time, up to `gate_ab_max_processes`, while a finalist's margin over the shipped variant is undecided at
    --min-gain: a clear margin (or a clear tie) stops early. Memory is not paired: the A/B's `gate_ab_processes`."""
    if settings.objective == "memory":
        return Stage("finalists", target.gate.ab_processes, target.scenario.min_duration_s, None)
    return Stage("finalists", 3, target.scenario.min_duration_s, None, decide_pct=settings.min_gain_pct,
                 decide_figure="p95" if settings.objective == "p95" else "p50")


def _advance(result: TuneResult, measured: list[Measured], keep: int, stage: str,
             previous: Measured | None = None) -> list[Candidate]:
    """The best `keep` candidates that fit every budget (and the last search's winner, where it fits: the two are
    then measured side by side); the others are told why they stop here."""
    objective = result.settings.objective
    fitting = sorted((m for m in measured if not m.rejected and m.value(objective) is not None),
                     key=lambda m: -m.value(objective))
    kept = fitting[:keep] + ([previous] if previous in fitting[keep:] else [])
    for m in fitting:
        if m not in kept:
            m.rejected = (f"below the best {keep} at {stage} ({objective_figure(m, objective)}; the last kept "
                          f"{objective_figure(fitting[keep - 1], objective)})")
    return [m.candidate for m in kept]


def _previous_of(result: TuneResult, measured: list[Measured]) -> Measured | None:
    if result.previous is None:
        return None
    return next((m for m in measured if m.candidate.key == result.previous.key), None)


def _against_previous(result: TuneResult, run: StageRun, finalists: list[Measured]):
    """This search's winner against the last one's, both finalists of one lockstep group: paired p50."""
    from harness.bench.pairing import paired_ratios
    from harness.gate.decide import decide_paired

    last = _previous_of(result, finalists)
    if result.winner is None or last is None or last.row is result.winner.row or last.row is None or last.row.status != "ok":
        return None
    a, b = run.measurements.get(last.row.key), run.measurements.get(result.winner.row.key)
    ratios = paired_ratios(a, b) if a is not None and b is not None else None
    return decide_paired(ratios.p50, result.settings.min_gain_pct) if ratios is not None else None


def _winner(result: TuneResult, finalists: list[Measured]) -> Measured | None:
    """The finalist best by the objective (p50: its paired ratio to the shipped variant) that fits every budget."""
    objective = result.settings.objective
    fitting = [m for m in finalists if not m.rejected and m.value(objective) is not None]
    if not fitting:
        return None
    if objective == "p50" and all(m.is_shipped or m.vs_shipped is not None and m.vs_shipped.ratio for m in fitting):
        return min(fitting, key=lambda m: 1.0 if m.is_shipped else m.vs_shipped.ratio)  # the shipped one: itself
    return max(fitting, key=lambda m: m.value(objective))
