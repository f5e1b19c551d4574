"""`gpunn serve`: a local page to draw a digit and watch the model's guesses (standard library HTTP server).

GET / gives the page (gpunn/cli/static/draw.html). POST /predict takes JSON {"width", "height", "ink"}, where
"ink" is base64 of width*height bytes (0 paper .. 255 ink), and answers the top 3 and all probabilities
plus the 28x28 image the model saw (drawing.mnist_like), predicted through the model's predict_proba, on
the model's device. A bad request gets a 4xx JSON {"error": ...} and one log line; the server keeps going.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import numpy as np

from gpunn.cli.drawing import FIELD, mnist_like
from gpunn.cli.predict_inputs import top_classes
from gpunn.errors import ConfigError, GpunnError, Options

MAX_BODY = 512 * 1024  # bytes; a 512x512 drawing is ~350 KB of base64
MAX_SIDE = 512
TOP = 3
MAX_THREADS = 16  # requests handled at once; the rest wait in the listen queue
LISTEN_QUEUE = 128  # connections the kernel holds for us (the standard library's 5 reset a burst of 100)


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status


def page() -> bytes:
    return resources.files("gpunn.cli").joinpath("static/draw.html").read_bytes()


def decode_drawing(body: bytes) -> np.ndarray:
    """The (height, width) uint8 ink of a /predict body, or BadRequest saying what is wrong."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; deep nesting recurses
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed JSON ({exc})") from None
    if not isinstance(request, dict) or not {"width", "height", "ink"} <= request.keys():
        raise BadRequest(HTTPStatus.BAD_REQUEST, 'expected a JSON object with "width", "height" and "ink"')
    width, height, ink = request["width"], request["height"], request["ink"]
    if not all(type(side) is int and 1 <= side <= MAX_SIDE for side in (width, height)):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"width and height must be whole numbers 1..{MAX_SIDE}")
    try:
        pixels = base64.b64decode(ink, validate=True) if isinstance(ink, str) else None
    except binascii.Error:
        pixels = None
    if pixels is None or len(pixels) != width * height:
        raise BadRequest(
            HTTPStatus.BAD_REQUEST, f'"ink" must be base64 of width*height = {width * height} bytes'
        )
    return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width)


def content_length(text: str | None) -> int:
    """The body's size from its Content-Length header, or BadRequest: ASCII digits only (int() would also
    take "+1", " 1", "1_0" and Unicode digits, and refuse over 4,300 digits with a ValueError)."""
    if text is None:
        raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length {text[:40]!r} is not a byte count")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_BODY)) or int(digits) > MAX_BODY:
        raise BadRequest(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"body of {digits[:40]} bytes is over the {MAX_BODY}-byte limit",
        )
    return int(digits)


class Predictor:
    """The model behind the page: one prediction at a time (a GPU stream is not shared between threads)."""

    def __init__(self, model, names):
        if model.in_features != FIELD * FIELD:
            raise GpunnError(
                f"the page draws {FIELD}x{FIELD} digits but this model takes {model.in_features} inputs: "
                "serve a model trained on mnist or fashion-mnist"
            )
        self.model, self.names = model, names
        self._lock = threading.Lock()

    def answer(self, ink: np.ndarray) -> dict:
        image = mnist_like(ink)
        with self._lock:
            probabilities = self.model.predict_proba(image.reshape(1, -1))[0]
        return {
            "top": [{"name": n, "probability": p, "text": t} for n, p, t in top_classes(probabilities, self.names, TOP)],
            "probabilities": [{"name": n, "probability": float(p)} for n, p in zip(self.names, probabilities, strict=True)],
            "image": image.ravel().tolist(),
        }  # fmt: skip


def make_handler(predictor: Predictor, log=sys.stderr):
    class Handler(BaseHTTPRequestHandler):
        server_version = "gpunn-serve"
        timeout = 30  # seconds a client may stall before its connection is dropped

        def log_request(self, code="-", size="-"):  # one line per request, written by _reply
            pass

        def handle(self):
            try:
                super().handle()
            except ConnectionError:  # the client left before its answer was written: nothing to crash over
                self.log_message("connection closed by the client")

        def log_message(self, format, *args):
            print(f"gpunn serve: {self.address_string()} {format % args}", file=log, flush=True)

        def _reply(self, status: HTTPStatus, body: bytes, content_type: str, note: str = "") -> None:
            # logged before answering, so whoever reads the answer finds its line in the log
            self.log_message("%s %s -> %d%s", self.command, self.path, status, f" {note}" if note else "")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, payload: dict, note: str = "") -> None:
            self._reply(status, json.dumps(payload).encode(), "application/json", note)

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self._reply(HTTPStatus.OK, page(), "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"}, "not found")

        def do_POST(self):
            try:
                if self.path != "/predict":
                    raise BadRequest(HTTPStatus.NOT_FOUND, "not found: POST to /predict")
                self._json(HTTPStatus.OK, predictor.answer(decode_drawing(self._body())))
            except BadRequest as bad:
                self._json(bad.status, {"error": str(bad)}, str(bad))
            except TimeoutError:
                self.close_connection = True
                self.log_message(
                    "%s %s -> dropped: no body within %d s", self.command, self.path, self.timeout
                )

        def _body(self) -> bytes:
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise BadRequest(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    f"Content-Type must be application/json, not {content_type!r}",
                )
            return self.rfile.read(content_length(self.headers.get("Content-Length")))

    return Handler


class Server(ThreadingHTTPServer):
    """A thread per request, at most MAX_THREADS at a time: a burst waits in the listen queue instead of
    starting a thread per connection (or being reset, as with the standard library's queue of 5)."""

    daemon_threads = True  # Ctrl-C does not wait for open connections
    request_queue_size = LISTEN_QUEUE

    def __init__(self, address, handler, family=socket.AF_INET):
        self.address_family = family  # before the socket is made: IPv6 hosts work too
        self._slots = threading.BoundedSemaphore(MAX_THREADS)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        self._slots.acquire()  # frees within the handler's timeout: every request thread ends by then
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def address_family(host: str, port: int) -> int:
    """The socket family for host:port (IPv4 or IPv6), or one line naming the option that is wrong."""
    if type(port) is not int or not 0 <= port <= 65535:
        raise ConfigError(
            Options(
                lambda n: f"{n('port')} must be a port number 0..65535 (0 picks a free one), got {port!r}"
            )
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise ConfigError(Options(lambda n: f"cannot resolve {n('host')} {host!r} ({why})")) from None
    return infos[0][0]


def make_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, log=sys.stderr) -> Server:
    """The server bound to host:port (0 picks a free port); a port or host that cannot be used is one line
    naming the option to change."""
    family = address_family(host, port)
    try:
        return Server((host, port), make_handler(predictor, log), family)
    except OSError as exc:
        # a port in use or reserved is the port's fault; an address not on this machine is the host's
        flag = "port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "host"
        why = exc.strerror
        raise GpunnError(
            Options(lambda n: f"cannot listen on {host}:{port} ({why}): pick another {n(flag)}")
        ) from None


def serve(checkpoint_path, device: str | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the page until Ctrl-C; the first line printed is the page's address."""
    from gpunn.cli.predict_inputs import load_predictor

    address_family(host, port)  # a wrong --port or --host fails before the model is loaded
    predictor = Predictor(*load_predictor(checkpoint_path, device))
    with make_server(predictor, host, port) as server:
        bound_host, bound_port = server.server_address[:2]
        bound_host = f"[{bound_host}]" if ":" in bound_host else bound_host  # an IPv6 address in a URL
        print(
            f"serving http://{bound_host}:{bound_port}/ (model on {predictor.model.backend.device}; Ctrl-C stops)",
            flush=True,
        )
        server.serve_forever()
