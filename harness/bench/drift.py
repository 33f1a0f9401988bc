"""The drift guard: every model also measured beside its version at the target's `gate_baseline` revision.

Each step can stay under the gate's minimum effect while the steps add up (five +8 % steps ship +47 %);
the record always agrees with yesterday. A target that names a baseline revision (the last release's tag)
gets every model rebuilt there and measured in the same lockstep group, so the sum is a paired ratio too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.bench.plan import BenchPlan
from harness.bench.prepare import PreparedModel, make_variant, prepare_model, prepared_from_files
from harness.errors import HarnessError
from harness.gate.ab import (Baselines, holds_harness, machine_tag, made_by_revision, repo_root, resolve_commit,
                             tree_at)


def baseline_commit(suite_path: Path, rev: str, where: str) -> str:
    """The commit a target's gate_baseline names, or one line saying why it cannot be used."""
    root = repo_root(Path(suite_path))
    if root is None:
        raise HarnessError(f"{where}: gate_baseline = \"{rev}\", but {suite_path} is not in a git checkout: run from a "
                           f"clone of the repository, or drop gate_baseline")
    sha = resolve_commit(root, rev)
    if sha is None:
        raise HarnessError(f"{where}: gate_baseline = \"{rev}\" is not a commit of the repository at {root} (a shallow "
                           f"clone may lack it: fetch it, e.g. git fetch --tags, or fix the name)")
    return sha


def baseline_partners(plan: BenchPlan, models: list[PreparedModel], baselines: Baselines, workdir: Path, say,
                      on_calibration) -> tuple[list[PreparedModel], dict[str, str]]:
    """Each model as the gate_baseline revision makes it, to measure beside today's; notes on those without one."""
    rev = plan.target.gate.baseline
    sha = baseline_commit(plan.suite.path, rev, plan.target.where)
    partners, notes = [], {}
    for model in models:
        name = model.spec.name
        say(f"rebuild {name} at gate_baseline {rev}")
        found = baselines.partner(name, workdir, sha)
        if found.spec is None or found.spec.input_hw != model.spec.input_hw:
            notes[name] = f"gate_baseline {rev}: {found.reason or 'its input size differs'}: no drift guard"
            continue
        old = _build(plan, dataclasses.replace(found.spec, name=f"{name}@baseline"), model, baselines, sha, workdir, say,
                     on_calibration)
        if isinstance(old, str):
            notes[name] = f"gate_baseline {rev}: {old}: no drift guard"
        elif old.exported is None:
            notes[name] = f"gate_baseline {rev}: its export failed there: no drift guard"
        elif {v: m.sha256 for v, m in old.made.items()} == {v: m.sha256 for v, m in model.made.items()}:
            notes[name] = f"gate_baseline {rev} ({sha[:12]}) makes the same files: no drift since it"
        else:
            partners.append(dataclasses.replace(old, ab_partner_of=name))
            notes[name] = f"measured beside its version at gate_baseline {rev} ({sha[:12]}) in lockstep children"
    return partners, notes


def _build(plan: BenchPlan, spec, model: PreparedModel, baselines: Baselines, sha: str, workdir: Path, say,
           on_calibration) -> PreparedModel | str:
    """The baseline's files: made by that revision's own harness in the harness's own repository (a built-in model's
    code is the harness's), else its suite entry, checkpoint and factory made with today's harness."""
    tree = tree_at(baselines.root, sha, workdir)
    if tree is None or not holds_harness(tree):
        return prepare_model(plan, spec, model.eval_set, say, lambda: None, on_calibration)
    relative = Path(plan.suite.path).resolve().relative_to(baselines.root)
    files, named = {}, [v for v in plan.variants if plan.target.scenario.variant(v).named is not None]
    for variant in (v for v in plan.variants if v not in named):
        say(f"make {spec.name} {variant} with the harness of {sha[:12]}")
        made = made_by_revision(tree, sha, model.spec.name, relative, variant, machine_tag(plan.machine))
        if isinstance(made, str):
            return f"the harness at {sha[:12]} could not make {variant} ({made})"
        files[variant] = made
    old = prepared_from_files(spec, files, model.eval_set, f"made by the harness at {sha[:12]}")
    for variant in named:  # the target's settings (today's, as for any other repository) on that revision's export
        say(f"make {spec.name} {variant} from the export of {sha[:12]}")
        old.made[variant] = make_variant(plan, spec, old.exported, variant, say, on_calibration)
    return old
