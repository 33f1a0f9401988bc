"""The child's protocol: versioned messages both ways, and a reply that a printing library cannot break."""

import argparse
import os

import numpy as np
import pytest

from harness.results.measurement import build_request
from harness.measure.protocol import PROTOCOL_VERSION, ProtocolError, Reply, Request
from harness.runners import run_worker
from harness.targets import TargetProfile
from harness.bench.yardsticks import trivial_model


def _request(**changes) -> Request:
    values = dict(onnx_path="m.onnx", sample_path="s.npy", output_shape=(3, 8, 8), threads=1, cpu_affinity=(0,))
    return Request(**{**values, **changes})


def test_request_and_reply_survive_the_trip():
    request = _request(serving="concurrent", images_at_once=4)
    assert Request.from_json(request.to_json()) == request
    reply = Reply(ok=True, latencies_ms=(1.0, 2.0), confusion=((1, 0), (0, 1)), cpu_affinity=(0, 1))
    assert Reply.from_json(reply.to_json()) == reply


def test_another_protocol_version_is_refused():
    text = _request().to_json().replace(f'"version": {PROTOCOL_VERSION}', '"version": 99')
    with pytest.raises(ProtocolError, match="protocol version 99"):
        Request.from_json(text)
    with pytest.raises(ProtocolError, match="not a JSON document"):
        Reply.from_json("hello")


def test_a_library_printing_to_stdout_does_not_break_the_reply(tmp_path, monkeypatch):
    """sitecustomize runs in the child before anything else: its print lands on stdout, the reply does not."""
    (tmp_path / "sitecustomize.py").write_text("print('a chatty library says hello')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    np.save(tmp_path / "sample.npy", np.zeros((3, 8, 8), dtype=np.float32))
    target = TargetProfile.from_flat("t", threads=1, warmup_runs=1, min_runs=3, min_duration_s=0.0)
    measured = run_worker(build_request(trivial_model(tmp_path / "floor.onnx", (8, 8)), target, tmp_path / "sample.npy"))
    assert measured.error is None and measured.latency.runs >= 3


def test_an_internal_error_exits_3_in_one_line(capsys):
    from harness.cli import _run

    def broken(args):
        raise KeyError("boom")

    assert _run(argparse.Namespace(run=broken, debug=False)) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internal error: KeyError") and "--debug" in err[0]
    with pytest.raises(KeyError):
        _run(argparse.Namespace(run=broken, debug=True))
