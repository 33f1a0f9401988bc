"""The report: frontier on a hand-made case, a page that lists every row, PNGs that decode."""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from harness.errors import HarnessError
from harness.report import load_target_results, pareto_front, render_report

from conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def test_pareto_front_on_a_hand_made_case():
    points = [(10.0, 50.0),  # 0: fastest, least accurate: on the front
              (20.0, 60.0),  # 1: on the front
              (25.0, 55.0),  # 2: slower and worse than 1: dominated
              (30.0, 61.0),  # 3: most accurate: on the front
              (20.0, 58.0),  # 4: as fast as 1 but worse: dominated
              (10.0, 50.0)]  # 5: ties 0 exactly: kept, nothing beats it
    assert pareto_front(points) == [0, 5, 1, 3]


def test_report_lists_every_row_and_draws_decodable_pngs(tmp_path):
    results = load_target_results(FIXTURES / "gate_record.csv")
    files = render_report([results], tmp_path / "report")
    page = files.html.read_text()
    for model, variant in (("tiny_unet", "fp32"), ("tiny_unet", "int8-static")):
        assert f"<td>{model}</td><td>{variant}</td>" in page
    assert "Intel(R) Xeon(R) Processor" in page and "2026-11-26T10:40:06Z" in page
    assert "src='data:image/png;base64," in page and "<script" not in page and "http" not in page
    assert {p.name for p in files.pngs} == {"trade_off_watch.png", "variants_watch_tiny_unet.png"}
    for png in files.pngs:
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.width >= 800 and image.height >= 300


def test_a_history_page_beside_the_results_is_linked_and_copied(tmp_path):
    latest = tmp_path / "results" / "latest"
    latest.mkdir(parents=True)
    shutil.copy(FIXTURES / "gate_record.csv", latest / "watch.csv")
    without = render_report([load_target_results(latest / "watch.csv")], tmp_path / "plain").html.read_text()
    assert "History:" not in without
    (latest / "history-watch.html").write_text("<html>a history page as harness history writes it</html>")
    files = render_report([load_target_results(latest / "watch.csv")], tmp_path / "report")
    assert "<a href='history-watch.html'>" in files.html.read_text()
    assert (tmp_path / "report" / "history-watch.html").read_text() == (latest / "history-watch.html").read_text()


def test_report_with_a_baseline_marks_it(tmp_path):
    results = load_target_results(FIXTURES / "gate_record.csv", FIXTURES / "gate_record.csv")
    files = render_report([results], tmp_path)
    assert files.html.is_file()


@pytest.mark.parametrize("fixture, message", [("old_schema.csv", "lacks column"), ("empty.csv", "has no rows")])
def test_bad_results_files_are_refused(tmp_path, fixture, message):
    path = FIXTURES / fixture
    if fixture == "empty.csv":
        path = tmp_path / "empty.csv"
        path.write_text((FIXTURES / "gate_record.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(HarnessError, match=message):
        load_target_results(path)
    proc = run_cli("report", "--target", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_bench_report_flag_writes_the_page_and_says_where(tmp_path, tiny_suite, fast_target):
    out = tmp_path / "page"
    proc = run_cli("bench", "--target", str(fast_target), "--suite", str(tiny_suite),
                   "--results-dir", str(tmp_path / "results"), "--report", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"report written: {out / 'index.html'}" in proc.stdout
    assert "tiny_unet" in (out / "index.html").read_text()


def test_a_zoo_record_gets_one_figure_per_model(tmp_path):
    """The committed watch record holds the baseline and its zoo: colours per model, one variants figure each."""
    record = Path(__file__).parents[1] / "results" / "watch.csv"
    results = load_target_results(record)
    models = {r.model for r in results.rows}
    assert len(models) > 2
    files = render_report([results], tmp_path / "report")
    assert {p.name for p in files.pngs} == {"trade_off_watch.png"} | {f"variants_watch_{m}.png" for m in models}
    for png in files.pngs:
        with Image.open(png) as image:
            image.verify()


def test_rows_of_two_backends_are_told_apart_in_the_page_and_the_markdown_summary(tmp_path):
    """ORT's int8-static and OpenVINO's run of the same file: one row each, each naming its backend."""
    import dataclasses

    from harness.gate import run_gate
    from harness.report.summary import markdown_summary
    from harness.results import read_rows, rows_to_csv_text
    from harness.targets import TargetProfile

    rows = read_rows(FIXTURES / "gate_record.csv")
    int8 = next(r for r in rows if r.variant == "int8-static")
    rows.append(dataclasses.replace(int8, backend="openvino", backend_version="2026.4.1", p50_ms=int8.p50_ms * 0.9))
    record = tmp_path / "watch.csv"
    record.write_text(rows_to_csv_text(rows))
    page = render_report([load_target_results(record)], tmp_path / "report").html.read_text()
    assert "<td>tiny_unet</td><td>int8-static</td><td>1 per call</td><td>onnxruntime</td>" in page
    assert "<td>tiny_unet</td><td>int8-static</td><td>1 per call</td><td>openvino</td>" in page
    target = TargetProfile.from_flat("watch", threads=1)
    text = markdown_summary(target, rows, run_gate(rows, rows, target), record)
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert "| tiny_unet | int8-static | 1 per call | openvino |" in text
    widths = {line.replace("\\|", "").count("|") for line in tables[:len(rows) + 2]}
    assert len(widths) == 1  # the results table: every line as wide as its header
    gate_lines = tables[len(rows) + 2:]
    assert gate_lines[0].startswith("| model | variant | serving | backend | outcome |")
    assert {line.replace("\\|", "").count("|") for line in gate_lines} == {gate_lines[0].count("|")}
    # many rows of one model (the cloud's servings times backends): the four panels stacked, labels apart
    many = rows + [dataclasses.replace(int8, backend="openvino", serving=f"batch of {k}") for k in range(2, 10)]
    record.write_text(rows_to_csv_text(many))
    files = render_report([load_target_results(record)], tmp_path / "many")
    figure = next(p for p in files.pngs if p.name.startswith("variants_"))
    with Image.open(figure) as image:
        assert image.height > 1000 and image.width >= 1400  # 11 bars: stacked, 13 in wide at 110 dpi
