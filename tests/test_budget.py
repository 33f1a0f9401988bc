import dataclasses

from harness.gate.budget import summarize, verdict
from harness.results import ResultRow
from harness.results.row import CELL_FIELDS
from harness.targets import TargetProfile, with_changes

TARGET = TargetProfile.from_flat("watch", threads=1, memory_quantity="model", memory_budget_mb=15, p95_budget_ms=100,
                                 max_miou_drop=1.0)


def _row(**changes) -> ResultRow:
    values = dict.fromkeys(CELL_FIELDS)
    values.update(target="watch", model="m", variant="fp32", serving="1 per call", status="ok", verdict="",
                  flags="", recipe="", nodes_in_float_names="", threads=1, images_at_once=1, cpu_mem_arena=False,
                  cpu_model="cpu", cpu_count=2, cpu_isa="avx2", ort_version="1", harness_version="0", measured_at="now",
                  p95_ms=50.0, model_mb=10.0, peak_rss_mb=400.0, quality_drop_pts=0.2)
    values.update(changes)
    return ResultRow(**values)


def test_a_row_within_every_budget_fits():
    assert verdict(_row(), TARGET) == "fits"


def test_each_broken_budget_is_named():
    assert verdict(_row(model_mb=16.0), TARGET) == "over memory (model 16.0 > 15 MB)"
    assert verdict(_row(p95_ms=120.0), TARGET).startswith("over latency (p95 120.0 > 100 ms)")
    assert verdict(_row(quality_drop_pts=1.5), TARGET).startswith("over accuracy")
    both = verdict(_row(model_mb=20.0, p95_ms=120.0), TARGET)
    assert "over latency" in both and "over memory" in both


def test_process_budget_reads_peak_rss():
    process = with_changes(TARGET, memory_quantity="process", memory_budget_mb=300)
    assert verdict(_row(), process).startswith("over memory (process 400.0 > 300 MB)")


def test_cap_and_failures():
    assert verdict(_row(status="exceeded memory cap (90 MB > 20 MB)"), TARGET).startswith("over memory")
    assert verdict(_row(status="worker failed: boom"), TARGET) == "not measured"


def test_summary_counts():
    rows = [dataclasses.replace(_row(), verdict=v) for v in ("fits", "fits", "over memory (x)", "not measured")]
    summary = summarize(rows)
    assert (summary.rows, summary.fitting, summary.not_measured) == (4, 2, 1)
    assert summary.line(TARGET) == ("target watch: 2 of 4 rows fit every budget, 1 over a budget, 1 not measured"
                                    " — fits: m fp32 (1 per call), m fp32 (1 per call)")


def test_a_served_row_is_judged_on_its_held_rate_and_its_server_memory():
    cloud = with_changes(TARGET, memory_quantity="process", memory_budget_mb=512, http_min_rate_per_s=10)
    served = _row(serving="http: open loop", held_rate_per_s=12.5, peak_rss_mb=180.0)
    assert verdict(served, cloud) == "fits"
    assert verdict(dataclasses.replace(served, held_rate_per_s=8.0), cloud) == "below rate (held 8.00 < 10 requests/s)"
    assert verdict(dataclasses.replace(served, peak_rss_mb=600.0), cloud).startswith("over memory (process 600.0 > 512 MB)")
    stopped = "the server passed the memory cap (530 MB > 512 MB) and was stopped"
    assert verdict(_row(status=stopped), cloud) == f"over memory ({stopped})"
    assert verdict(dataclasses.replace(served, held_rate_per_s=None), cloud) == "fits"  # not a served open-loop row


def test_a_precision_the_cpu_lacks_passes_the_gate_and_a_failed_child_does_not():
    from harness.gate import check_row

    refused = _row(status="not on this CPU: OpenVINO's CPU plugin here offers FP32, INT8, no BF16")
    assert verdict(refused, TARGET) == "not on this CPU"
    assert check_row(dataclasses.replace(refused, verdict="not on this CPU"), None, TARGET).outcome == "pass"
    broken = _row(status="worker failed: boom")
    assert check_row(dataclasses.replace(broken, verdict=verdict(broken, TARGET)), None, TARGET).outcome == "fail"
    summary = summarize([dataclasses.replace(_row(), verdict="fits"), dataclasses.replace(refused, verdict="not on this CPU")])
    assert summary.line(TARGET).startswith("target watch: 1 of 2 rows fit every budget, 1 not possible on this CPU")
