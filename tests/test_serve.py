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
from gpunn.cli.serve import MAX_BODY, MAX_THREADS, Predictor, make_server
from gpunn.errors import ConfigError, GpunnError
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
        connection.sendall(text.encode("latin-1"))  # the bytes of each character, as HTTP reads headers
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


@pytest.mark.parametrize(
    "length, status",
    [
        ("\u00b2", 400),  # a superscript 2 (one Latin-1 byte, as headers are read): isdigit() yes, int() no
        ("+4", 400),
        ("1_0", 400),
        ("0x10", 400),
        ("9" * 5000, 413),  # over int()'s 4,300-digit limit, and over the body limit
        ("0" * 50 + "{size}", 200),  # leading zeros do not change the number
    ],
    ids=["superscript", "plus", "underscore", "hex", "5000-digits", "leading-zeros"],
)
def test_a_content_length_that_is_not_plain_digits_is_a_400_not_a_traceback(server, length, status):
    url, log = server
    body = '{"width": 1, "height": 1, "ink": "AA=="}'
    length = length.replace("{size}", str(len(body)))
    reply = raw_request(
        url,
        f"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
        f"Connection: close\r\n\r\n{body}",
    )
    assert reply.split(" ", 2)[1] == str(status), reply
    (line,) = log.getvalue().splitlines()  # one line: the answer, no traceback
    assert f"-> {status}" in line
    assert post(url, GOOD.encode())[0] == 200


def test_a_burst_of_100_simultaneous_requests_all_get_an_answer(server):
    url, log = server
    clients = 100
    assert clients > MAX_THREADS  # more than run at once: the rest wait in the listen queue
    start = threading.Barrier(clients)
    statuses = [None] * clients

    def client(index):
        start.wait(timeout=60)
        try:
            statuses[index] = post(url, GOOD.encode())[0]
        except OSError as error:  # a reset connection
            statuses[index] = repr(error)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [200] * clients
    assert log.getvalue().count("POST /predict -> 200") == clients


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--port", "99999"], "--port must be a port number 0..65535 (0 picks a free one), got 99999"),
        (["--port", "-1"], "--port must be a port number 0..65535"),
        (["--host", "no-such-host.invalid"], "cannot resolve --host 'no-such-host.invalid'"),
    ],
)
def test_cli_bad_port_or_host_is_one_line_naming_the_flag(tmp_path, flags, message):
    done = subprocess.run(
        [sys.executable, "-m", "gpunn", "serve", str(tmp_path / "unread.npz"), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr == f"gpunn: error: {message}" + done.stderr.split(message)[1]
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_python_make_server_names_keywords():
    predictor = Predictor(fixed_model(), tuple("0123456789"))
    with pytest.raises(ConfigError, match=r"port= must be a port number 0\.\.65535"):
        make_server(predictor, "127.0.0.1", 65536)
    with pytest.raises(ConfigError, match="cannot resolve host= 'no-such-host.invalid'"):
        make_server(predictor, "no-such-host.invalid", 0)


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
