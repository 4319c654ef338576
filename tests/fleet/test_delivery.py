"""Delivery edge cases (issue 18): a cut connection is resumed, a trickle is given up on, a corrupt
cached download does not poison the package, archives do not pile up, a newer desired state stops
the download in progress."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from edgekit.agent.ota import Slots
from tests.fleet.test_ota import Log, _deployment


class Flaky(http.server.BaseHTTPRequestHandler):
    """Serves one file; ``mode`` says how badly: "cut" closes the first response half-way,
    "trickle" sends one byte every 0.2 s."""

    data = b""
    mode = "cut"
    repo = None  # edgekit.fleet.repository.Repository
    requests: list = []

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/tuf/"):  # the fleet's metadata, served whole: only packages are flaky
            metadata = self.repo.file(self.path[len("/tuf/") :])
            if metadata is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(metadata.stat().st_size))
            self.end_headers()
            self.wfile.write(metadata.read_bytes())
            return
        start = int(self.headers.get("Range", "bytes=0-").split("=")[1].rstrip("-") or 0)
        type(self).requests.append(start)
        body = self.data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "cut" and len(type(self).requests) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        if self.mode == "trickle":
            for i in range(min(len(body), 100)):  # bounded: the client gives up long before
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(0.2)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Flaky.requests = []
    yield server
    server.shutdown()


def _served_by(flaky, d, tmp_path, mode, server):
    Flaky.data, Flaky.mode, Flaky.repo = (tmp_path / d.package).read_bytes(), mode, server.repo
    d.url = f"http://127.0.0.1:{flaky.server_address[1]}/{d.sha256}.tar"
    return d


def test_a_cut_connection_is_resumed(tmp_path, server, keys, models, flaky):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    d = _served_by(flaky, _deployment(tmp_path, server, keys, models[0]), tmp_path, "cut", server)
    assert slots.deploy(d, log)
    assert len(Flaky.requests) == 2 and Flaky.requests[1] > 0  # the second request resumed with Range
    assert [s for s, details in log.details if s == "downloading"] == ["downloading"] * 2


def test_a_trickle_is_given_up_on_and_retried_later(tmp_path, server, keys, models, flaky):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    slots.download_deadline = lambda size: 1.5
    d = _served_by(flaky, _deployment(tmp_path, server, keys, models[0]), tmp_path, "trickle", server)
    assert not slots.deploy(d, log)
    assert log.steps[-1] == "failed" and "took longer than" in log.details[-1][1]["reason"]
    assert d.id not in slots.state().get("given_up", [])  # the network's fault: tried again later
    Flaky.mode = "whole"
    assert slots.deploy(d, log) and slots.current()["sha256"] == d.sha256  # resumed from what it had


def test_a_corrupt_cached_download_does_not_poison_the_package(tmp_path, server, keys, models):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    d = _deployment(tmp_path, server, keys, models[0])
    cached = tmp_path / "device" / "downloads" / f"{d.sha256}.tar"
    cached.write_bytes(b"\x00" * d.size)  # a full-size download with the wrong bytes
    assert not slots.deploy(d, log) and "sha256" in log.details[-1][1]["reason"]
    assert not cached.exists()
    d.id = "d1-again"  # the operator deploys the same package again
    assert slots.deploy(d, log) and slots.current()["sha256"] == d.sha256


def test_archives_do_not_pile_up(tmp_path, server, keys, models):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    for version, model in (("1", models[0]), ("2", models[1])):
        assert slots.deploy(_deployment(tmp_path, server, keys, model, version=version, dep_id=f"d{version}"), log)
        assert list((tmp_path / "device" / "downloads").iterdir()) == []


def test_a_newer_desired_state_stops_the_download(tmp_path, server, keys, models, flaky):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    d = _served_by(flaky, _deployment(tmp_path, server, keys, models[0]), tmp_path, "trickle", server)
    threading.Timer(0.5, slots.superseded.set).start()
    assert not slots.deploy(d, log)
    assert "newer desired state" in log.details[-1][1]["reason"]
    assert d.id not in slots.state().get("given_up", [])


def _five_outputs(tmp_path):
    """The serving model's input, but 5 outputs instead of 4: valid, healthy alone, incompatible."""
    import numpy as np

    from edgekit.converters.tflite.writer import serialize
    from tests.runtime.models import float_graph

    g = float_graph()
    g.tensors["scores"].shape = (1, 5)
    fc = g.nodes[0]
    fc.inputs[1] = g.add_const(np.ones((5, 6), np.float32), "w5")
    fc.inputs[2] = g.add_const(np.zeros(5, np.float32), "b5")
    path = tmp_path / "five.tflite"
    path.write_bytes(serialize(g))
    return path


def test_a_model_with_other_outputs_fails_its_health_check(tmp_path, server, keys, models):
    """Issue 18: a valid model with another output shape passed the health check and the whole
    fleet took it. It is incompatible with what serves unless packaged with io_change."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0], version="1", dep_id="d1"), log)
    slots.commit("d1", log)
    five = _five_outputs(tmp_path)
    assert not slots.deploy(_deployment(tmp_path, server, keys, five, version="2", dep_id="d2"), log)
    reason = log.details[-1][1]["reason"]
    assert "incompatible with the serving model" in reason and "[1, 5] instead of [1, 4]" in reason
    assert slots.current()["version"] == "1"
    store, base = server
    from edgekit import package
    from edgekit.agent.ota import Deployment

    info = package.build(five, tmp_path / "five-3.tar", name="fc", version="3", signing_key=keys[0], io_change=True)
    server.publish(info)
    d = Deployment("d3", "fc-3.tar", info.sha256, info.size, f"{base}{info.sha256}.tar")
    assert slots.deploy(d, log) and slots.current()["version"] == "3"  # the operator said so


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"layout": "nchw"}, "color RGB makes 3 channel(s), the input takes 8 (nchw)"),
        ({"color": "L", "mean": [0.5, 0.5, 0.5]}, "mean has 3 values for 1 channel(s)"),
        ({"color": "L", "resize": [0, 0]}, "resize [0, 0] does not give the input's 8x8"),
        ({"color": "RGB"}, "color RGB makes 3 channel(s), the input takes 1"),
    ],
)
def test_preprocessing_that_cannot_feed_the_model_is_refused_when_packaging(tmp_path, keys, spec, says):
    from edgekit import package
    from edgekit.converters import convert
    from edgekit.errors import PackageError
    from tests.fleet.test_cli import ROOT

    model = tmp_path / "digits.tflite"
    convert(str(ROOT / "edgekit" / "samples" / "digits_cnn.onnx"), model)
    with pytest.raises(PackageError, match="does not fit") as caught:
        package.build(model, tmp_path / "p.tar", name="d", version="1", signing_key=keys[0], preprocessing=spec)
    assert says in str(caught.value)
    assert not (tmp_path / "p.tar").exists()
    package.build(model, tmp_path / "p.tar", name="d", version="1", signing_key=keys[0], preprocessing={"color": "L"})
