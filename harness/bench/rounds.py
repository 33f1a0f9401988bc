"""Measuring: every variant of every model, and the runtime floor, in alternating rounds of child processes."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.measure.backends import DEFAULT_BACKEND, backend_module, requested_precision
from harness.bench.plan import BenchPlan, run_options, split_run
from harness.bench.prepare import PreparedModel
from harness.results.measurement import Measurement, build_request, combine
from harness.runners import Runner
from harness.bench.enough import more_rounds
from harness.bench.yardsticks import floor_key, reference_model, trivial_model


def floor_model(workdir: Path, input_hw: tuple[int, int], backend: str) -> Path:
    """The runtime floor's model file, of the kind the backend runs: a one-node ONNX (ONNX Runtime, OpenVINO, a plugin
    reading .onnx), or a one-op .tflite (LiteRT)."""
    if getattr(backend_module(backend), "FILE_SUFFIX", "") == ".tflite":
        from harness.variants.litert import trivial_tflite

        return trivial_tflite(input_hw)
    return trivial_model(workdir / f"floor_{input_hw[0]}x{input_hw[1]}.onnx", input_hw)


def measure_groups(plan: BenchPlan, models: list[PreparedModel], runner: Runner, workdir: Path, say, advance):
    """{model name: its measurements}. Each model with its A/B partner is one group kept on one place (a Ray
    node); where the runner has several places the groups run side by side, else all alternate in one loop."""
    lanes = runner.lanes(plan.target) if _until_decided(plan) and hasattr(runner, "lanes") else [runner]
    if len(lanes) > 1 and "http" not in plan.target.scenario.serving:  # a service takes the cores it needs itself
        return measure_in_lanes(plan, models, runner, lanes, workdir, say, advance)
    if getattr(runner, "places", 1) <= 1:
        measured = measure_alternating(plan, models, runner, workdir, say, advance)
        return {model.spec.name: measured for model in models}
    groups = _groups(models)

    def measure_group(index: int):
        folder = workdir / f"group_{index}"  # each group times its own floor and reference on its own node
        folder.mkdir()
        return measure_alternating(plan, groups[index], runner.place(index), folder, say, advance)

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        results = list(pool.map(measure_group, range(len(groups))))
    return {model.spec.name: measured for group, measured in zip(groups, results) for model in group}


def measure_in_lanes(plan: BenchPlan, models: list[PreparedModel], runner: Runner, lanes: list, workdir: Path, say,
                     advance) -> dict:
    """The floors first; then the models without an A/B side by side, one group per lane of cores at a time (each group
    still in lockstep on its own cores, so its ratios stay paired); then the A/B groups one at a time on every core."""
    import threading

    floors = _measure_floors(plan, models, runner, workdir, say, advance)  # {key: (Measurement, None)}
    groups = _groups(models)
    pending, lock, out = [g for g in groups if len(g) == 1], threading.Lock(), {}

    def lane_work(lane) -> None:
        while True:
            with lock:
                if not pending:
                    return
                group = pending.pop(0)
            folder = workdir / f"lane_{group[0].spec.name}"
            folder.mkdir()
            measured = measure_alternating(plan, group, lane, folder, say, advance, floors)
            with lock:
                out[group[0].spec.name] = measured

    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        list(pool.map(lane_work, lanes))
    ab = [m for g in groups if len(g) > 1 for m in g]
    if ab:
        (workdir / "ab").mkdir()
        measured = measure_alternating(plan, ab, runner, workdir / "ab", say, advance, floors)
        out.update({m.spec.name: measured for m in ab})
    return out


def _groups(models: list[PreparedModel]) -> list[list[PreparedModel]]:
    """Each model with its A/B partner (the recorded version measured beside it), if any."""
    return [[m, *(p for p in models if p.ab_partner_of == m.spec.name)] for m in models if not m.ab_partner_of]


def _until_decided(plan: BenchPlan) -> bool:
    return plan.target.scenario.recipe == "until-decided"


def _measure_floors(plan: BenchPlan, models: list[PreparedModel], runner: Runner, workdir: Path, say, advance,
                    rounds: range | None = None, children: dict | None = None) -> dict:
    """Each input size's runtime floor under each backend, once per round: {key: (Measurement, None)}."""
    children = {} if children is None else children
    samples = {model.spec.input_hw: model.eval_set.sample_path for model in models}
    for round_index in rounds if rounds is not None else range(plan.target.scenario.processes):
        for hw in sorted(samples):
            for backend in plan.backends:  # each runtime's own floor: what it costs with a trivial model
                say(f"runtime floor {hw[0]}x{hw[1]}{'' if backend == DEFAULT_BACKEND else ' ' + backend} (round {round_index + 1})")
                request = dataclasses.replace(_untimed(build_request(floor_model(workdir, hw, backend), plan.target,
                                                                     samples[hw])), backend=backend)
                children.setdefault(floor_key(hw, backend), []).append(Measurement.from_reply(runner.run(request,
                                                                       plan.target.budgets.memory_cap_mb or None)))
                advance()
    return {key: (combine(ms), None) for key, ms in children.items()}


def measure_alternating(plan: BenchPlan, prepared: list[PreparedModel], runner: Runner, workdir: Path, say, advance,
                        floors: dict | None = None):
    """Every (model, variant, serving) and each input size's floor, in `processes` rounds; {key: (Measurement, predictions)}.

    Each round measures the floor, then each model group (a model, with its A/B partner) in lockstep: all
    its variants' children alive at once, timed in alternating blocks a fraction of a second apart, so a
    ratio against fp32 or against the recorded version cancels a shared host's drift (harness.measure.lockstep).
    A/B groups get `gate_ab_processes` rounds, then more (up to `gate_ab_max_processes`) while a shipped
    row's comparison is still undecided: Triton's perf_analyzer also measures until its windows agree.
    A runner without `run_together` measures them one after another instead (unpaired). Until decided (the
    default recipe), a group without an A/B is timed `table_duration_s` per child, and gets more rounds only
    while a shipped row's figure is too near its budget for its processes to agree on the side it falls.
    Accuracy and predictions come from the first round's children. `floors`: measured already (lanes).
    """
    target = plan.target
    processes = target.scenario.processes
    groups = _groups(prepared)
    extra = [g for g in groups if len(g) > 1]  # measured past `processes` rounds: the A/B groups, then the open ones
    rounds = max(processes, target.gate.ab_processes) if extra else processes
    children: dict[tuple, list[Measurement]] = {}
    predictions: dict[tuple, Path | None] = {}
    reference = reference_model(workdir / "reference.onnx")
    floor_children: dict = {}
    round_index = 0
    while round_index < rounds or (round_index < target.gate.ab_max_processes and extra):
        progress = f"round {round_index + 1}/{rounds}" if round_index < rounds else f"extra round {round_index + 1}"
        if floors is None and round_index < processes:  # the floor needs no extra rounds
            _measure_floors(plan, prepared, runner, workdir, say, advance, range(round_index, round_index + 1),
                            floor_children)
        for group in groups if round_index < processes else extra:
            _measure_group(plan, group, runner, workdir, round_index, children, predictions, reference, say, progress)
            for _ in range(len(group) * len(plan.runs) * len(target.scenario.in_children) * (round_index < rounds)):
                advance()
        round_index += 1
        if round_index >= rounds:
            floors = floors or {key: (combine(ms), None) for key, ms in floor_children.items()}  # all floor rounds done
            extra = [g for g in (groups if round_index == rounds else extra) if more_rounds(plan, g, children, floors)]
    measured = {key: (combine(ms), predictions.get(key)) for key, ms in children.items()}
    measured.update(floors)
    if "http" in target.scenario.serving:
        measured.update(measure_services(plan, [m for m in prepared if not m.ab_partner_of], runner, workdir, say, advance))
    return measured


def measure_services(plan: BenchPlan, prepared: list[PreparedModel], runner: Runner, workdir: Path, say, advance) -> dict:
    """Serving "http": each variant as its own server process under load (harness.serve), after the children."""
    from harness.results.measurement import failed
    from harness.serve.config import ServerConfig
    from harness.serve.measure import measure_served, server_cpus, write_images
    from harness.targets import HTTP_LOADS

    target, out = plan.target, {}
    for model in prepared:
        spec, eval_set = model.spec, model.eval_set
        images = workdir / f"http_images_{spec.input_hw[0]}x{spec.input_hw[1]}"
        if not images.is_dir():
            write_images(eval_set.images_u8, images)
        for variant in plan.served_runs:
            made = model.made.get(variant)
            if made is None:
                continue
            if runner.name != "local":
                for load in HTTP_LOADS:
                    out[(spec.name, variant, load)] = (failed(f"http serving is measured on this machine only, not on "
                                                              f"{runner.name}"), None)
                continue
            say(f"serve {spec.name} {variant} over HTTP under load")
            config = ServerConfig(
                onnx_path=str(made.path), input_hw=spec.input_hw, num_classes=spec.num_classes,
                threads=target.device.threads, cpu_affinity=server_cpus(target)[0],
                inter_op_threads=target.device.inter_op_threads,
                backend_options={**run_options(target, split_run(variant)[1], DEFAULT_BACKEND),
                                 "allow_spinning": target.scenario.http_allow_spinning},
                port=0, model=spec.name, variant=variant)
            masks = workdir / f"pred_{_slug(spec.name)}_{variant}_http.npy"
            loads = measure_served(config, target, images, eval_set.eval_path, workdir, plan.suite.ignore_index, masks)
            for load, measurement in loads.items():
                out[(spec.name, variant, load)] = (measurement, masks if masks.is_file() and not measurement.error else None)
            advance()
    return out


def _measure_group(plan: BenchPlan, group: list[PreparedModel], runner: Runner, workdir: Path, round_index: int,
                   children: dict, predictions: dict, reference: Path, say, progress: str) -> None:
    """One round of one group: its children in lockstep where the runner can, else one after another."""
    target, cap = plan.target, plan.target.budgets.memory_cap_mb or None
    quick = _until_decided(plan) and len(group) == 1  # no A/B judges these rows: their table figures and budgets
    jobs = [job for model in group for job in _jobs(plan, model, workdir, round_index, children, reference, quick)]
    together = getattr(runner, "run_together", None)
    if together is not None:
        say(f"measure {' + '.join(m.spec.name for m in group)}: {len(jobs)} children in lockstep ({progress})")
        replies = together([request for _, request, _ in jobs], cap, pythons=[python for *_, python in jobs])
    else:
        replies = []
        for key, request, _ in jobs:
            say(f"measure {key[0]} {key[1]}, {target.scenario.serving_label(key[2])} ({progress})")
            replies.append(runner.run(request, cap))
    for (key, request, _), reply in zip(jobs, replies):
        children.setdefault(key, []).append(Measurement.from_reply(reply))
        if round_index == 0:
            path = Path(request.predictions_path) if request.predictions_path else None
            predictions[key] = path if path is not None and path.is_file() else None


def _untimed(request):
    """The floor's peak needs no timing: one warm-up and one run."""
    return dataclasses.replace(request, warmup_runs=1, min_runs=1, min_duration_s=0.0)


def _jobs(plan: BenchPlan, model: PreparedModel, workdir: Path, round_index: int, children: dict, reference: Path,
          quick: bool = False):
    """(key, request, interpreter) for each variant and serving of one model still worth measuring."""
    target, spec, eval_set = plan.target, model.spec, model.eval_set
    first = round_index == 0
    output_shape = plan.task.output_shape(spec.num_classes, spec.input_hw)
    jobs = []
    for run in plan.runs:
        backend, variant = split_run(run)
        for serving in target.scenario.in_children:
            key = (spec.name, run, serving)
            made = model.made.get(variant)
            if made is None or serving in model.serving_failures or (children.get(key) and children[key][-1].error):  # a child that failed once fails again
                continue
            pred_path = workdir / f"pred_{_slug(spec.name)}_{_slug(run)}_{serving}.npy" if first else None
            request = build_request(made.path, target, eval_set.sample_path, eval_set.eval_path if first else None,
                                    spec.num_classes, plan.suite.ignore_index, pred_path, serving,
                                    reference_path=reference, output_shape=output_shape)
            options = model.recorded_backend_options.get(run) or run_options(  # an A/B partner's: as recorded
                target, variant, backend, model.recorded_backend_options.get(backend))
            if quick:
                request = dataclasses.replace(request, min_duration_s=min(request.min_duration_s,
                                                                          target.scenario.table_duration_s))
            request = dataclasses.replace(request, report_machine=first, backend=backend,
                                          precision=requested_precision(backend, target.scenario.variant(variant).precision),
                                          backend_options=options, **model.request_changes)
            jobs.append((key, request, model.python))
    return jobs


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
