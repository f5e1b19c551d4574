"""gpunn serve: a real server on 127.0.0.1 and an ephemeral port; good and bad requests."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from gpunn.cli.drawing import mnist_like
from gpunn.cli.serve import MAX_BODY, Predictor, make_server
from gpunn.errors import GpunnError
from gpunn.nn.model import mlp

# a model whose answer follows from the math: zero weights, biases log(p) -> softmax gives p for any image
P = np.array([0.05, 0.02, 0.03, 0.40, 0.05, 0.05, 0.05, 0.30, 0.03, 0.02])


def fixed_model():
    model = mlp([784, 10], dtype="float64")
    model.set_weights([np.zeros((784, 10)), np.log(P)])
    return model


@pytest.fixture
def server():
    log = io.StringIO()
    httpd = make_server(Predictor(fixed_model(), tuple("0123456789")), "127.0.0.1", 0, log=log)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", log
    httpd.shutdown()
    httpd.server_close()


def post(url, body: bytes, content_type="application/json"):
    request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def drawing_body(ink: np.ndarray) -> bytes:
    height, width = ink.shape
    encoded = base64.b64encode(ink.astype(np.uint8).tobytes()).decode()
    return json.dumps({"width": width, "height": height, "ink": encoded}).encode()


def test_page_and_prediction(server):
    url, log = server
    with urllib.request.urlopen(url + "/", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert b'<canvas id="pad"' in response.read()
    ink = np.zeros((60, 80), dtype=np.uint8)
    ink[10:50, 30:40] = 255
    status, answer = post(url, drawing_body(ink))
    assert status == 200
    assert [entry["text"] for entry in answer["top"]] == ["3 (40.0%)", "7 (30.0%)", "6 (5.0%)"]
    assert [entry["probability"] for entry in answer["probabilities"]] == pytest.approx(P)
    np.testing.assert_array_equal(np.array(answer["image"]).reshape(28, 28), mnist_like(ink))
    assert log.getvalue().splitlines()[-1].endswith("POST /predict -> 200")


def raw_request(url: str, text: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(text.encode())
        reply = b""
        while chunk := connection.recv(4096):  # error answers close the connection: read to the end
            reply += chunk
        return reply.decode()


GOOD = drawing_body(np.full((4, 4), 255)).decode()


@pytest.mark.parametrize(
    "body, content_type, status, reason",
    [
        ("{not json", "application/json", 400, "malformed JSON"),
        ("[" * 100_000, "application/json", 400, "malformed JSON"),  # nesting deeper than the decoder goes
        ("[1, 2]", "application/json", 400, 'expected a JSON object with "width"'),
        (GOOD, "text/plain", 415, "Content-Type must be application/json"),
        ('{"width": 5, "height": 4, "ink": "AAAA"}', "application/json", 400, "base64 of width*height = 20"),
        ('{"width": 4000, "height": 4, "ink": ""}', "application/json", 400, "whole numbers 1..512"),
        ('{"width": 1, "height": 1, "ink": "!!"}', "application/json", 400, '"ink" must be base64'),
    ],
)
def test_bad_bodies_get_a_4xx_and_one_log_line(server, body, content_type, status, reason):
    url, log = server
    got, answer = post(url, body.encode(), content_type)
    assert got == status and reason in answer["error"]
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and f"-> {status}" in lines[0] and reason in lines[0]
    assert post(url, GOOD.encode())[0] == 200  # still serving


def test_oversized_missing_length_and_unknown_paths(server):
    url, log = server
    reply = raw_request(
        url,
        f"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n",
    )
    assert reply.startswith("HTTP/1.0 413") and "byte limit" in reply
    reply = raw_request(url, "POST /predict HTTP/1.1\r\nContent-Type: application/json\r\n\r\n")
    assert reply.startswith("HTTP/1.0 411")
    reply = raw_request(
        url, "POST /other HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert reply.startswith("HTTP/1.0 404")
    reply = raw_request(url, "GET /secret HTTP/1.1\r\n\r\n")
    assert reply.startswith("HTTP/1.0 404")
    assert [line.split("-> ")[1][:3] for line in log.getvalue().splitlines()] == ["413", "411", "404", "404"]


def test_a_model_that_does_not_take_28x28_is_refused():
    with pytest.raises(GpunnError, match="takes 64 inputs"):
        Predictor(mlp([64, 10]), tuple("0123456789"))


def test_cli_serves_on_a_free_port_and_names_a_busy_one(tmp_path):
    fixed_model().save(tmp_path / "fixed.npz")
    command = [sys.executable, "-m", "gpunn", "serve", str(tmp_path / "fixed.npz")]
    process = subprocess.Popen(
        [*command, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("serving http://127.0.0.1:"), first + process.stderr.read()
        url = first.split()[1].rstrip("/")
        status, answer = post(url, GOOD.encode())
        assert status == 200 and answer["top"][0]["text"] == "3 (40.0%)"
        busy = subprocess.run(
            [*command, "--port", url.rsplit(":", 1)[1]], capture_output=True, text=True, env=os.environ
        )
        assert (
            busy.returncode == 1 and "pick another --port" in busy.stderr and "Traceback" not in busy.stderr
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
