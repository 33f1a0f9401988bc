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
import warnings
from dataclasses import dataclass, field

from harness.bench import BenchInputs
from harness.errors import HarnessError
from harness.measure.backends import DEFAULT_BACKEND
from harness.spec import Suite
from harness.targets import TargetProfile
from harness.tune.measure import OBJECTIVES, Measured, Stage, StageRun, measure_stage
from harness.tune.space import TUNED_INT8, Candidate, Space, build_space, suggest, trial_params


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

    @property
    def beats_shipped(self) -> bool:
        """Whether the winner is faster than the shipped variant by the minimum gain, its whole interval below 1."""
        decision = self.winner.vs_shipped if self.winner is not None else None
        if decision is None or decision.high is None:
            return False
        return decision.high < 1 and (1 / decision.ratio - 1) * 100 >= self.settings.min_gain_pct


class TimeUp(Exception):
    pass


def default_shipped(target: TargetProfile) -> str:
    """The variant a tuned one must beat: the target's first shipped variant, else int8-static, else fp32."""
    if target.budgets.ship:
        return target.budgets.ship[0]
    return "int8-static" if "int8-static" in target.scenario.variants else "fp32"


def run_tune(suite: Suite, target: TargetProfile, inputs: BenchInputs, settings: TuneSettings, console=None,
             say=print) -> TuneResult:
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
    result = TuneResult(suite.models[0].name, target, settings, space, shipped, serving)
    started = time.perf_counter()
    deadline = started + settings.time_limit_s if settings.time_limit_s else None
    try:
        screened = _screen(suite, target, inputs, result, console, say, deadline)
        survivors = _advance(result, screened, settings.survivors, "screen")
        if survivors:
            _check_time(deadline, "the survivors stage")
            run = _stage(suite, target, inputs, result, survivors, Stage("survivors", target.scenario.processes,
                                                                         target.scenario.min_duration_s, None), console)
            say(_stage_line(result, run, "survivors"))
            finalists = _advance(result, [result.measured[c.name] for c in survivors], settings.finalists, "survivors")
            if finalists:
                _check_time(deadline, "the finalists stage")
                stage = Stage("finalists", target.gate.ab_processes, target.scenario.min_duration_s, None)
                run = _stage(suite, target, inputs, result, finalists, stage, console)
                say(_stage_line(result, run, "finalists"))
                result.winner = _winner(result, [result.measured[c.name] for c in finalists])
    except TimeUp as e:
        result.stopped = str(e)
    except KeyboardInterrupt:
        result.stopped = "interrupted (Ctrl-C)"
    result.wall_s = time.perf_counter() - started
    return result


def _check_time(deadline: float | None, what: str) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise TimeUp(f"time limit reached before {what}")


def _stage(suite, target, inputs, result: TuneResult, candidates: list[Candidate], stage: Stage, console) -> StageRun:
    run = measure_stage(suite, target, inputs, candidates, stage, result.serving, result.shipped
                        if stage.name != "screen" else None, console)
    result.measured.update(run.measured)
    result.stages[stage.name] = run
    result.stage_wall_s[stage.name] = result.stage_wall_s.get(stage.name, 0.0) + run.wall_s
    return run


def _screen(suite, target, inputs, result: TuneResult, console, say, deadline) -> list[Measured]:
    """Optuna proposes batches; each is measured beside fp32 on a few images; every value told is paired."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings, space = result.settings, result.space
    with warnings.catch_warnings():  # group=True is "experimental" since Optuna 2.8: it is what a conditional space needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, group=True, constant_liar=True,
                                             n_startup_trials=settings.batch)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for params in _known_points(target, space, result.shipped, inputs.quantize):
        study.enqueue_trial(params)
    seen: dict[tuple, Measured] = {}
    stage = Stage("screen", 2, min(target.scenario.min_duration_s, 0.5), settings.screen_images)
    batch_index = 0
    while len(seen) < settings.trials:
        if batch_index:  # the first batch is always measured: a search reports something
            _check_time(deadline, "the next screening batch")
        batch, repeats = _propose(study, space, seen, min(settings.batch, settings.trials - len(seen)), len(seen))
        result.trials_asked += len(batch) + len(repeats)
        for trial, earlier in repeats:  # settings proposed again: told what they measured, not measured twice
            _tell(study, trial, earlier, settings.objective)
        if not batch:
            break  # the space is exhausted (or Optuna proposes only what it has measured)
        batch_index += 1
        run = _stage(suite, target, inputs, result, [c for _, c in batch], stage, console)
        for trial, c in batch:
            seen[c.key] = run.measured[c.name]
            _tell(study, trial, run.measured[c.name], settings.objective)
        say(_stage_line(result, run, f"screen {batch_index}"))
    return list(seen.values())


def _propose(study, space: Space, seen: dict, wanted: int, numbered: int):
    """Up to `wanted` new candidates from Optuna, and the trials that proposed settings already measured."""
    from optuna.trial import TrialState

    batch, repeats, keys = [], [], set()
    for _ in range(wanted * 20):
        if len(batch) >= wanted:
            break
        trial = study.ask()
        c = suggest(trial, space, f"t{numbered + len(batch) + 1:02d}")
        if c.key in seen:
            repeats.append((trial, seen[c.key]))
        elif c.key in keys:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            keys.add(c.key)
            batch.append((trial, c))
    return batch, repeats


def _tell(study, trial, measured: Measured, objective: str) -> None:
    from optuna.trial import TrialState

    value = measured.value(objective)
    if value is None:
        study.tell(trial, state=TrialState.FAIL)
        return
    trial.set_constraint("budgets", 1.0 if measured.rejected else 0.0)  # over a budget: infeasible, still informative
    study.tell(trial, value)


def _known_points(target: TargetProfile, space: Space, shipped: str, defaults) -> list[dict]:
    """Screened first: the shipped variant's own settings, and each runtime's default int8 (the suite's quantization
    options), where the space has them."""
    method = defaults.calibration_method + (f":{defaults.percentile:g}" if defaults.calibration_method == "percentile" else "")
    int8 = {"calibration": method, "per_channel": defaults.per_channel, "activation_type": defaults.activation_type}
    points = []
    for backend in space.backends:
        choices = space.session.get(backend, {})
        session = {k: target.runtime.options_for(backend).get(k, v[0]) for k, v in choices.items()}
        session = {k: (v if v in choices[k] else choices[k][0]) for k, v in session.items()}
        bases = [target.scenario.variant(shipped).base] if backend == DEFAULT_BACKEND else []
        for base in dict.fromkeys(bases + [TUNED_INT8]):
            quantize = int8 if base == TUNED_INT8 else {}
            if base in space.variants[backend] and all(v in space.int8[k] for k, v in quantize.items()):
                points.append(trial_params(space, backend, base, quantize, session))
    return points


def _advance(result: TuneResult, measured: list[Measured], keep: int, stage: str) -> list[Candidate]:
    """The best `keep` candidates that fit every budget; the others are told why they stop here."""
    objective = result.settings.objective
    fitting = sorted((m for m in measured if not m.rejected and m.value(objective) is not None),
                     key=lambda m: -m.value(objective))
    for m in fitting[keep:]:
        m.rejected = (f"below the best {keep} at {stage} ({_figure(m, objective)}; the last kept "
                      f"{_figure(fitting[keep - 1], objective)})")
    return [m.candidate for m in fitting[:keep]]


def _figure(m: Measured, objective: str) -> str:
    value = m.value(objective)
    return {"p50": f"x{value:.2f} vs fp32", "p95": f"p95 x{value:.2f} vs fp32", "memory": f"{-value:.1f} MB",
            "throughput": f"{value:.1f} images/s"}[objective]


def _winner(result: TuneResult, finalists: list[Measured]) -> Measured | None:
    """The finalist best by the objective (p50: its paired ratio to the shipped variant) that fits every budget."""
    objective = result.settings.objective
    fitting = [m for m in finalists if not m.rejected and m.value(objective) is not None]
    if not fitting:
        return None
    if objective == "p50" and all(m.vs_shipped is not None and m.vs_shipped.ratio for m in fitting):
        return min(fitting, key=lambda m: m.vs_shipped.ratio)
    return max(fitting, key=lambda m: m.value(objective))


def _stage_line(result: TuneResult, run: StageRun, label: str) -> str:
    objective = result.settings.objective
    ranked = sorted((m for m in run.measured.values() if m.value(objective) is not None), key=lambda m: -m.value(objective))
    fitting = [m for m in ranked if not m.rejected]
    best = f"best that fits: {fitting[0].candidate.describe()} ({_figure(fitting[0], objective)})" \
        if fitting else "none fits the budgets"
    return (f"{label}: {len(run.measured)} candidates in {run.wall_s:.0f} s, {len(run.measured) - len(fitting)} over a "
            f"budget or failed; {best}")
