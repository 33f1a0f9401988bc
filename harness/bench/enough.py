"""When a group of children has been measured enough: after its rounds, a group gets another while any of these says
so (an A/B still undecided, a shipped figure near its budget, a tuned finalist's margin still undecided)."""

from __future__ import annotations

from harness.bench.pairing import paired_ratios
from harness.bench.plan import BenchPlan, split_run
from harness.bench.prepare import PreparedModel
from harness.bench.yardsticks import floor_key
from harness.gate.decide import UNDECIDED, decide_paired
from harness.results.measurement import combine


def more_rounds(plan: BenchPlan, group: list[PreparedModel], children: dict, floors: dict) -> bool:
    """Whether this group (a model, with its A/B partner if any) needs another round."""
    if len(group) > 1:
        return ab_undecided(plan, group, children)
    return near_budget(plan, group[0], children, floors) or undecided_against(plan, group[0].spec.name, children)


def ab_undecided(plan: BenchPlan, group: list[PreparedModel], children: dict) -> bool:
    """Whether a shipped row of this A/B group is still undecided (its interval spans the minimum effect)."""
    rules, target = plan.target.gate, plan.target
    model = group[0].spec.name
    for partner in group[1:]:
        for variant in (r for r in plan.runs if target.budgets.ships(split_run(r)[1])):
            for serving in target.scenario.in_children:
                ratios = _paired(children, (partner.spec.name, variant, serving), (model, variant, serving))
                if ratios is not None and UNDECIDED in (decide_paired(ratios.p50, rules.latency_tolerance_pct).outcome,
                                                        decide_paired(ratios.p95, rules.p95_tolerance_pct).outcome):
                    return True
    return False


def undecided_against(plan: BenchPlan, name: str, children: dict) -> bool:
    """harness tune's finalists (`BenchInputs.decide_against`): whether a shipped row's ratio to the run it is judged
    against, paired in the same rounds, is still undecided at the search's minimum gain."""
    against = plan.inputs.decide_against
    if against is None:
        return False
    for run in (r for r in plan.runs if r != against.run and plan.target.budgets.ships(split_run(r)[1])):
        for serving in plan.target.scenario.in_children:
            ratios = _paired(children, (name, against.run, serving), (name, run, serving))
            if ratios is not None and decide_paired(ratios.p95 if against.figure == "p95" else ratios.p50,
                                                    against.min_effect_pct).outcome == UNDECIDED:
                return True
    return False


def _paired(children: dict, old: tuple, new: tuple):
    """new / old per round from the children measured so far; None while either is missing or failed."""
    a, b = children.get(old), children.get(new)
    if not a or not b or any(m.error for m in (*a, *b)):
        return None
    return paired_ratios(combine(a), combine(b))


def near_budget(plan: BenchPlan, model: PreparedModel, children: dict, floors: dict) -> bool:
    """Until decided: whether a shipped row's p95 or memory is so near its budget that its processes' own spread
    (or 2 % of the budget) could carry it across: then it gets another round."""
    target, budgets = plan.target, plan.target.budgets
    if target.scenario.recipe != "until-decided":
        return False
    for run in (r for r in plan.runs if budgets.ships(split_run(r)[1])):
        floor = floors.get(floor_key(model.spec.input_hw, split_run(run)[0]), (None,))[0]  # this backend's own floor
        floor_mb = (floor.peak_rss_mb or 0.0) if floor is not None and budgets.memory_quantity == "model" else 0.0
        for serving in target.scenario.in_children:
            measured = [m for m in children.get((model.spec.name, run, serving), ()) if not m.error and m.latency]
            memory = [m.peak_rss_mb - floor_mb for m in measured if m.peak_rss_mb is not None]
            if straddles([m.latency.p95_ms for m in measured], budgets.p95_budget_ms) or \
                    straddles(memory, budgets.memory_budget_mb):
                return True
    return False


def straddles(values: list[float], budget: float) -> bool:
    if not budget or not values:
        return False
    margin = max(values) - min(values) + 0.02 * budget
    return min(values) - margin <= budget <= max(values) + margin
