"""The screening stage: Optuna's TPE proposes a batch at a time, each batch measured beside fp32 (one lockstep group
per place: a cluster's node), and every value it is told is a p50 paired against fp32 in the same cycles."""

from __future__ import annotations

import time
import warnings

from harness.measure.backends import DEFAULT_BACKEND
from harness.report.tune import stage_line
from harness.targets import TargetProfile
from harness.tune.measure import Measured, Stage, StageRun, measure_stage
from harness.tune.space import TUNED_INT8, Candidate, Space, point_of, suggest, trial_params


class Stopped(Exception):
    """The search ends early (a time limit, or nothing left it can measure); what it measured is kept."""


def check_time(deadline: float | None, what: str) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise Stopped(f"time limit reached before {what}")


def measure_stage_of(suite, target, inputs, result, candidates: list[Candidate], stage: Stage, console) -> StageRun:
    """One stage measured and kept in the search's result: screens without the shipped variant, a group per place."""
    screening = stage.name == "screen"
    run = measure_stage(suite, target, inputs, candidates, stage, result.serving,
                        None if screening else result.shipped, console, result.runner, result.places if screening else 1)
    result.measured.update(run.measured)
    result.stages[stage.name] = run
    result.stage_wall_s[stage.name] = result.stage_wall_s.get(stage.name, 0.0) + run.wall_s
    return run


def screen(suite, target, inputs, result, console, say, deadline) -> list[Measured]:
    """Optuna proposes batches; each is measured beside fp32 on a few images; every value told is paired."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings, space = result.settings, result.space
    with warnings.catch_warnings():  # group=True is "experimental" since Optuna 2.8: it is what a conditional space needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, group=True, constant_liar=True,
                                             n_startup_trials=settings.batch)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    known = _known_points(target, space, result.shipped, inputs.quantize)
    if result.previous is not None:  # screened first: a search on unchanged inputs meets the last winner again
        known.insert(0, trial_params(space, *point_of(result.previous)))
    for params in known:
        study.enqueue_trial(params)
    seen: dict[tuple, Measured] = {}
    stage = Stage("screen", 2, min(target.scenario.min_duration_s, 0.5), settings.screen_images)
    batch_index = 0
    while len(seen) < settings.trials:
        if batch_index:  # the first batch is always measured: a search reports something
            check_time(deadline, "the next screening batch")
        wanted = min(settings.batch * result.places, settings.trials - len(seen))  # a batch per node, side by side
        batch, repeats = _propose(study, space, seen, wanted, len(seen))
        result.trials_asked += len(batch) + len(repeats)
        for trial, earlier in repeats:  # settings proposed again: told what they measured, not measured twice
            _tell(study, trial, earlier, settings.objective)
        if not batch:
            break  # the space is exhausted (or Optuna proposes only what it has measured)
        batch_index += 1
        run = measure_stage_of(suite, target, inputs, result, [c for _, c in batch], stage, console)
        for trial, c in batch:
            seen[c.key] = run.measured[c.name]
            _tell(study, trial, run.measured[c.name], settings.objective)
        say(stage_line(result, run, f"screen {batch_index}"))
        if run.fp32 is None or run.fp32.status != "ok":  # every ratio is against it: another batch would fail alike
            raise Stopped(f"fp32 could not be measured ({run.fp32.status if run.fp32 else 'no row'}): fix that first "
                          f"(harness bench --variant fp32 says why)")
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
