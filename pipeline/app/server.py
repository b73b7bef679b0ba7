"""`oczss app`: upload photos, type class names, see each overlay with its legend beside the photo, download the
label PNGs. A WSGI application on Werkzeug (the HTTP toolkit TensorBoard already installs; Gradio, the usual
choice for demos, requires Pillow < 13, which oczss's pinned Pillow 13 excludes).

- Binds to 127.0.0.1 unless given another host; loads every offered segmenter once, before it serves.
- Limits: bytes per request, images per request, pixels per image (checked from the header, before decoding),
  class names per request.
- Writes only into its own temporary folder (uploads are decoded in memory; results, and the text embeddings'
  disk cache, go there), removed when it stops; the last KEEP_REQUESTS requests' files are kept.
- Errors reach the page as one line (JSON {"error": ...}); an unexpected one is logged with its traceback on the
  server and shown as one line, never a stack trace in the page. Random weights are announced on the page.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import signal
import tempfile
import threading
import uuid
from collections import deque
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.serving import make_server
from werkzeug.utils import safe_join, send_file
from werkzeug.wrappers import Request, Response

from oczss.errors import ImageInputError, OCZSSError
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.segmenter.api import Segmenter
from oczss.pipeline.segmenter.classes import parse_classes

log = logging.getLogger(__name__)
KEEP_REQUESTS = 64
LIMITS = {"max_upload_mb": 20, "max_images": 8, "max_pixels": 25_000_000, "max_classes": 64}


class App:
    """The WSGI application. segmenters: label shown in the page -> a loaded Segmenter; workdir: the only folder
    it writes to; limits: as LIMITS."""

    def __init__(self, segmenters: dict[str, Segmenter], workdir: str | Path, **limits):
        unknown = set(limits) - set(LIMITS)
        if unknown or not segmenters:
            raise OCZSSError(f"app: unknown limits {sorted(unknown)}" if unknown else "app: no method to offer")
        self.segmenters, self.workdir = segmenters, Path(workdir)
        self.limits = {**LIMITS, **limits}
        self.lock, self.requests = threading.Lock(), deque()  # one segmentation at a time: the models hold state

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.limits["max_upload_mb"] * 2 ** 20
        try:
            response = self._route(request)
        except HTTPException as e:
            response = e
        return response(environ, start_response)

    def _route(self, request: Request) -> Response:
        if request.path == "/" and request.method == "GET":
            return Response(self._page(), mimetype="text/html")
        if request.path == "/segment" and request.method == "POST":
            return self._segment(request)
        if request.path.startswith("/files/") and request.method == "GET":
            path = safe_join(str(self.workdir), request.path[len("/files/"):])
            if path is None or not Path(path).is_file():
                raise NotFound()
            return send_file(path, request.environ, mimetype="image/png", as_attachment="download" in request.args)
        raise NotFound()

    def _page(self) -> str:
        page = resources.files("oczss.pipeline.app").joinpath("page.html").read_text(encoding="utf-8")
        config = {"methods": [{"label": label, "random": s.random_weights} for label, s in self.segmenters.items()],
                  "limits": self.limits, "notice": RANDOM_NOTE}
        return page.replace("/*CONFIG*/null", json.dumps(config).replace("<", "\\u003c"))

    def _segment(self, request: Request) -> Response:
        try:
            uploads = request.files.getlist("images")
            return _json(self._results(request.form.get("method", ""), request.form.get("classes", ""), uploads))
        except RequestEntityTooLarge:
            return _json({"error": f"the upload is larger than {self.limits['max_upload_mb']} MB"}, 413)
        except OCZSSError as e:
            return _json({"error": str(e)}, 400)
        except Exception as e:  # noqa: BLE001 - the page gets one line, the server log the traceback
            log.exception("app: segmentation failed")
            return _json({"error": f"internal error ({type(e).__name__}: {e}); see the server's log"}, 500)

    def _results(self, label: str, classes: str, uploads: list) -> dict:
        if label not in self.segmenters:
            raise OCZSSError(f"method {label!r}: choose one of {', '.join(self.segmenters)}")
        parsed = parse_classes(classes, "class names")
        limits = self.limits
        if len(parsed) > limits["max_classes"]:
            raise OCZSSError(f"{len(parsed)} classes: this app takes at most {limits['max_classes']}")
        uploads = [u for u in uploads if u.filename]
        if not uploads or len(uploads) > limits["max_images"]:
            raise OCZSSError(f"upload 1 to {limits['max_images']} images (got {len(uploads)})")
        images = [self._decode(u) for u in uploads]
        folder = self._request_folder()
        segmenter, out = self.segmenters[label], []
        with self.lock:
            for i, (upload, rgb) in enumerate(zip(uploads, images)):
                result = segmenter(rgb, parsed)
                result.source = upload.filename
                files = result.save(folder, name=str(i))
                out.append({"name": upload.filename, "shares": result.shares(), **{
                    kind: f"/files/{folder.name}/{path.name}" for kind, path in files.items()}})
        return {"results": out, "random_weights": segmenter.random_weights,
                "notice": RANDOM_NOTE if segmenter.random_weights else ""}

    def _decode(self, upload) -> np.ndarray:
        """An upload as RGB uint8 [H, W, 3]; its pixel count is checked from the header before decoding."""
        data = upload.read()
        try:
            with Image.open(io.BytesIO(data)) as probe:
                pixels = probe.width * probe.height
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise ImageInputError(f"{upload.filename}: not an image ({type(e).__name__})") from None
        if pixels > self.limits["max_pixels"]:
            raise ImageInputError(f"{upload.filename}: {pixels:,} pixels; this app takes at most "
                                  f"{self.limits['max_pixels']:,} per image")
        try:
            return np.asarray(load_rgb(io.BytesIO(data)))
        except ImageError as e:
            raise ImageInputError(f"{upload.filename}: {e.reason}") from None

    def _request_folder(self) -> Path:
        folder = self.workdir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        self.requests.append(folder)
        while len(self.requests) > KEEP_REQUESTS:
            shutil.rmtree(self.requests.popleft(), ignore_errors=True)
        return folder


def _json(data: dict, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(offers: dict[str, tuple[str, dict]], device: str = "auto", host: str = "127.0.0.1", port: int = 7860,
          **limits) -> None:
    """Load every offered segmenter (label -> (oczss.load source, its options); text embeddings cached in the
    app's temporary folder), then serve until Ctrl-C; the temporary folder is removed afterwards."""
    from oczss.pipeline.segmenter import load

    workdir = Path(tempfile.mkdtemp(prefix="oczss-app-"))
    try:
        segmenters = {label: load(source, device=device, cache_dir=workdir / "text", **options)
                      for label, (source, options) in offers.items()}
        app = App(segmenters, workdir / "requests", **limits)
        server = make_server(host, port, app, threaded=True)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        if threading.current_thread() is threading.main_thread():  # SIGTERM stops it as Ctrl-C does
            signal.signal(signal.SIGTERM, _interrupt)
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("serving on %s: anyone who can reach this address can upload images", host)
        log.info("oczss app on http://%s:%d/ (Ctrl-C stops it; its files are in %s)", host, server.server_port,
                 workdir)
        server.serve_forever()  # Werkzeug's returns on Ctrl-C (and on SIGTERM, above) and closes the socket
        log.info("oczss app stopped; %s removed", workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
