"""The Label Studio ML backend (``ovpanoptic.serve``) over real HTTP, without Label Studio (a real
Label Studio server talks to it in test_label_studio_server.py).

The server runs in a thread on 127.0.0.1 (port 0) around a pipeline of the deterministic fakes of
``ovpanoptic.testing``: ``tiles`` proposes a 2x2 grid (and answers clicks and boxes with tiles and
box pixels), ``cycling`` gives tile i the class in column i % C, ``paint`` fuses in order; the
``label-studio`` exporter writes the regions. Masks are decoded with the Label Studio SDK's own
``decode_rle`` and compared pixel for pixel with ``Pipeline.segment`` / ``Pipeline.segment_prompt``
on the same image. Task images come from a local-files folder or from a tiny stdlib HTTP server
that plays Label Studio (uploads behind an API token, token refresh, a redirect, a 404).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import re
import logging
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import FAKE_OVERRIDES
from PIL import Image

from ovpanoptic.cli import main
from ovpanoptic.config import Config
from ovpanoptic.errors import InputError
from ovpanoptic.hookspecs import hookimpl
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.serve import FetchPolicy, LabelStudioBackend, ServeOptions, check_exposure, make_server
from ovpanoptic.serve.http import Reply
from ovpanoptic.testing import FakeComponentsPlugin, TilesConfig, TilesGenerator, registry_with
from ovpanoptic.types import Prompt, Vocabulary

decode_rle = pytest.importorskip("label_studio_sdk.converter.brush").decode_rle

HEIGHT, WIDTH = 24, 32
UPLOAD = "/data/upload/1/abcd1234-x.png"
LEGACY_TOKEN = "legacy-token-0123456789abcdef"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
ACCESS = "access-token-42"

#: A project whose tag names and task field differ from the exporter's defaults.
PROJECT_CONFIG = """<View>
  <Image name="img" value="$photo"/>
  <BrushLabels name="seg" toName="img"><Label value="car"/><Label value="road"/></BrushLabels>
  <KeyPointLabels name="kp" toName="img" smart="true"><Label value="car"/><Label value="road"/></KeyPointLabels>
  <RectangleLabels name="rect" toName="img" smart="true"><Label value="car"/><Label value="road"/></RectangleLabels>
</View>"""

ENDPOINTS = "/, /health, /predict, /setup, /train, /versions, /webhook"


# -- fixtures and helpers ----------------------------------------------------------------------


def make_image() -> np.ndarray:
    """A 24 x 32 RGB image (noise, so that its PNG is a few KB)."""
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_pipeline(*extra_plugins: Any, generator: str = "tiles") -> Pipeline:
    config = Config.from_dict(
        {"pipeline": {"proposal_generator": generator, "classifier": "cycling", "fuser": "paint", "exporters": ["label-studio"]}}
    )
    return Pipeline(config, registry=registry_with(FakeComponentsPlugin(), *extra_plugins), device="cpu")


@pytest.fixture
def image() -> np.ndarray:
    return make_image()


@pytest.fixture
def local_root(tmp_path: Path, image: np.ndarray) -> Path:
    """Label Studio's local-files folder with ``photo.png``; ``secret.png`` lies beside the folder."""
    root = tmp_path / "local"
    root.mkdir()
    (root / "photo.png").write_bytes(png_bytes(image))
    (tmp_path / "secret.png").write_bytes(png_bytes(image))
    return root


@pytest.fixture
def pipeline() -> Pipeline:
    return fake_pipeline()


@dataclass
class Served:
    """A backend serving on 127.0.0.1."""

    url: str
    port: int
    backend: LabelStudioBackend


def _serve_in_thread(handler: Any, options: ServeOptions, stops: list[Callable[[], None]]) -> tuple[str, int]:
    bound: list[tuple[str, int]] = []
    server = make_server(handler, options, on_bind=lambda host, port: bound.append((host, port)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    stops.append(stop)
    host, port = bound[0]
    return f"http://{host}:{port}", port


@pytest.fixture
def serve(pipeline: Pipeline) -> Iterator[Callable[..., Served]]:
    """Start a backend over ``pipeline`` (or another) in a thread; stopped at teardown."""
    stops: list[Callable[[], None]] = []

    def start(
        policy: FetchPolicy | None = None,
        vocabulary: Vocabulary | None = None,
        *,
        options: ServeOptions | None = None,
        pipe: Pipeline | None = None,
        model_version: str | None = None,
        predict_budget_s: float | None = 80.0,
    ) -> Served:
        backend = LabelStudioBackend(
            pipe or pipeline, vocabulary, policy or FetchPolicy(), model_version=model_version, predict_budget_s=predict_budget_s
        )
        stops.append(backend.close)
        url, port = _serve_in_thread(backend, options or ServeOptions(port=0), stops)
        return Served(url, port, backend)

    yield start
    for stop in reversed(stops):
        stop()


@dataclass
class FakeLabelStudio:
    """A tiny stdlib HTTP server that plays Label Studio: serves :data:`UPLOAD` to a request that
    carries ``expected_auth``, the ``extra`` images to anyone, ``/redirect.png`` (302 to ``redirect_to``), ``/api/token/refresh/``
    (exchanges :data:`JWT` for :data:`ACCESS`; without the slash a 301, as Django answers); everything else is 404.
    With ``prefix`` (a sub-path, ``/ls``) every path lives under it. Records every request."""

    png: bytes
    expected_auth: str = f"Token {LEGACY_TOKEN}"
    redirect_to: str = "http://127.0.0.1:9/x.png"
    refresh_answer: bytes | None = None
    extra: dict[str, bytes] = field(default_factory=dict)
    prefix: str = ""
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _route(self) -> str | None:
                """The path under the prefix, or None when it is not under it."""
                if not self.path.startswith(fake.prefix + "/"):
                    return None
                return self.path[len(fake.prefix) :]

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, self.headers.get("Authorization")))
                path = self._route()
                if path == UPLOAD:
                    if self.headers.get("Authorization") != fake.expected_auth:
                        self._answer(401, b'{"detail": "Authentication credentials were not provided."}')
                    else:
                        self._answer(200, fake.png, "image/png")
                elif path in fake.extra:
                    self._answer(200, fake.extra[path], "image/png")
                elif path == "/redirect.png":
                    self._answer(302, b"", Location=fake.redirect_to)
                else:
                    self._answer(404, b'{"detail": "Not found."}')

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append(("POST", self.path, self.headers.get("Authorization")))
                path = self._route()
                if path == "/api/token/refresh":
                    self._answer(301, b"", Location=self.path + "/")
                elif path != "/api/token/refresh/":
                    self._answer(404, b"{}")
                elif fake.refresh_answer is not None:
                    self._answer(200, fake.refresh_answer)
                elif json.loads(body) == {"refresh": JWT}:
                    self._answer(200, json.dumps({"access": ACCESS}).encode())
                else:
                    self._answer(401, b'{"detail": "Token is invalid or expired"}')

        return Handler


@pytest.fixture
def fake_ls(image: np.ndarray) -> Iterator[Callable[..., FakeLabelStudio]]:
    """Start fake Label Studio servers on 127.0.0.1; stopped at teardown."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(**options: Any) -> FakeLabelStudio:
        fake = FakeLabelStudio(png_bytes(image), **options)
        server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        fake.url = f"http://127.0.0.1:{server.server_address[1]}"
        return fake

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def task(url: str, task_id: int = 1, key: str = "photo") -> dict[str, Any]:
    return {"id": task_id, "data": {key: url}}


def predict_body(*tasks: dict[str, Any], config: str = PROJECT_CONFIG, context: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"tasks": list(tasks), "label_config": config, "project": "1.1700000000"}
    if context is not None:
        body["params"] = {"login": None, "password": None, "context": {"result": context}}
    return body


def post(served: Served | str, path: str, payload: Any = None, *, content: bytes | None = None, **kw: Any) -> httpx.Response:
    base = served if isinstance(served, str) else served.url
    if content is None:
        content = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    return httpx.post(base + path, content=content, headers=headers, **{"timeout": 10, **kw})


def get(served: Served | str, path: str, **kw: Any) -> httpx.Response:
    base = served if isinstance(served, str) else served.url
    return httpx.get(base + path, **{"timeout": 10, **kw})


def assert_error(response: httpx.Response, status: int, message: str) -> str:
    """The response is ``status`` with a JSON ``{"error": ...}`` containing ``message``, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert message in body["error"], body["error"]
    assert "Traceback" not in response.text
    return body["error"]


def brush_mask(region: dict[str, Any]) -> np.ndarray:
    """The ``(H, W)`` bool mask of a ``brushlabels`` region, decoded by the Label Studio SDK."""
    h, w = region["original_height"], region["original_width"]
    rgba = decode_rle(bytes(region["value"]["rle"])).reshape(h, w, 4)
    assert set(np.unique(rgba).tolist()) <= {0, 255}
    return rgba[:, :, 3] == 255


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh TCP connection; read the answer until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """:func:`raw_exchange`, the answer split into status, headers and body."""
    head, _, body = raw_exchange(port, data, timeout).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


# -- health, versions, setup -------------------------------------------------------------------


def test_health_root_and_versions(serve):
    served = serve()
    for path in ("/", "/health", "/health/"):
        response = get(served, path)
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        assert response.json() == {"status": "UP", "model_class": "ovpanoptic", "model_version": served.backend.model_version}
    assert get(served, "/versions").json() == {"versions": [served.backend.model_version]}
    other = serve(model_version="exp-7")
    assert get(other, "/health").json()["model_version"] == "exp-7"
    assert get(other, "/versions").json() == {"versions": ["exp-7"]}


def test_setup_accepts_our_generated_config_and_a_project_with_other_names(serve, pipeline):
    served = serve()
    generated = pipeline.component("exporter", "label-studio").labelling_config(pipeline.vocabulary("car, road"), interactive=True)
    for schema in (generated, PROJECT_CONFIG):
        response = post(served, "/setup", {"project": "1.1700000000", "schema": schema, "hostname": "http://x", "access_token": "t"})
        assert response.status_code == 200
        assert response.json() == {"model_version": served.backend.model_version}


def test_setup_refuses_configs_it_cannot_answer(serve, pipeline):
    served = serve()
    no_brush = '<View><Image name="img" value="$photo"/><RectangleLabels name="r" toName="img"><Label value="car"/></RectangleLabels></View>'
    assert_error(post(served, "/setup", {"schema": no_brush}), 422, "the labelling config has no BrushLabels tag on an Image tag")
    brush_on_nothing = '<View><Image name="img" value="$photo"/><BrushLabels name="seg" toName="other"><Label value="car"/></BrushLabels></View>'
    assert_error(post(served, "/setup", {"schema": brush_on_nothing}), 422, "no BrushLabels tag on an Image tag")
    assert_error(post(served, "/setup", {"schema": "this is not <xml"}), 422, "the labelling config is not valid XML")
    assert_error(post(served, "/setup", {"project": "1"}), 400, "the request has no labelling config ('label_config' or 'schema'")
    assert_error(post(served, "/setup", {"schema": 42}), 400, "the request has no labelling config")
    fixed_url = PROJECT_CONFIG.replace('value="$photo"', 'value="http://x/a.png"')
    assert_error(post(served, "/setup", {"schema": fixed_url}), 422, "the Image tag 'img' must take its URL from a task field")
    no_labels = '<View><Image name="img" value="$photo"/><BrushLabels name="seg" toName="img"/></View>'
    assert_error(post(served, "/setup", {"schema": no_labels}), 422, "the BrushLabels tag 'seg' has no Label")
    # with its own vocabulary the backend does not need the project's labels
    fixed = serve(vocabulary=pipeline.vocabulary(["car"]))
    assert post(fixed, "/setup", {"schema": no_labels}).json() == {"model_version": fixed.backend.model_version}


@pytest.mark.parametrize(
    ("labels", "classes"),
    [(["person, sitting", "road"], "'person', 'sitting', 'road'"), (["tv|monitor"], "'tv'"), (["Traffic  Light"], "'Traffic Light'")],
)
def test_project_labels_that_do_not_read_as_themselves_are_refused(serve, local_root, labels, classes):
    """Regions carry the vocabulary's class names: a label the class-list syntax changes would match
    no project label and every region would be left out, so the backend says so instead."""
    label_tags = "".join(f'<Label value="{label}"/>' for label in labels)
    config = f'<View><Image name="img" value="$photo"/><BrushLabels name="seg" toName="img">{label_tags}</BrushLabels></View>'
    served = serve(FetchPolicy(local_files_root=local_root))
    quoted = ", ".join(map(repr, labels))
    message = f"the BrushLabels labels {quoted} read as the classes {classes} (',' separates classes"
    assert_error(post(served, "/setup", {"schema": config}), 422, message)
    assert_error(post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"), config=config)), 422, message)


# -- /predict without context --------------------------------------------------------------------


def test_predict_local_file_regions_are_the_pipeline_masks_with_the_projects_names(serve, pipeline, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))
    response = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png", 7)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == served.backend.model_version
    (prediction,) = body["results"]
    # no vocabulary given to the backend: the project's labels are the classes
    result = pipeline.segment(local_root / "photo.png", pipeline.vocabulary(["car", "road"]))
    names = {c.id: c.name for c in result.vocabulary.categories}
    assert [names[s.category_id] for s in result.segments] == ["car", "road", "car"]  # road's two tiles: one stuff segment
    regions = prediction["result"]
    assert len(regions) == len(result.segments) == 3
    for region, segment in zip(regions, result.segments):
        assert region["type"] == "brushlabels"
        assert (region["from_name"], region["to_name"]) == ("seg", "img")
        assert (region["original_width"], region["original_height"]) == (WIDTH, HEIGHT)
        assert region["value"]["format"] == "rle"
        assert region["value"]["brushlabels"] == [names[segment.category_id]]
        assert region["score"] == round(segment.score, 6)
        np.testing.assert_array_equal(brush_mask(region), result.panoptic_map == segment.id)
    assert prediction["model_version"] == served.backend.model_version
    assert prediction["score"] == pytest.approx(np.mean([s.score for s in result.segments]), abs=1e-6)


def test_predict_answers_every_task_in_order(serve, local_root, image):
    (local_root / "flipped.png").write_bytes(png_bytes(image[::-1].copy()))
    served = serve(FetchPolicy(local_files_root=local_root))
    body = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png", 1), task("/data/local-files/?d=flipped.png", 2))).json()
    assert len(body["results"]) == 2
    assert all(len(p["result"]) == 3 for p in body["results"])


def test_classes_not_in_the_project_are_left_out(serve, pipeline, local_root):
    vocabulary = pipeline.vocabulary(["car", "road", "tree"])
    served = serve(FetchPolicy(local_files_root=local_root), vocabulary)
    (prediction,) = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"))).json()["results"]
    result = pipeline.segment(local_root / "photo.png", vocabulary)
    names = {c.id: c.name for c in vocabulary.categories}
    assert [names[s.category_id] for s in result.segments] == ["car", "road", "tree", "car"]
    kept = [s for s in result.segments if names[s.category_id] != "tree"]
    assert [r["value"]["brushlabels"] for r in prediction["result"]] == [["car"], ["road"], ["car"]]
    for region, segment in zip(prediction["result"], kept):
        np.testing.assert_array_equal(brush_mask(region), result.panoptic_map == segment.id)


def test_every_prediction_carries_the_backends_model_version(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root), model_version="exp-7")
    body = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"))).json()
    assert body["model_version"] == "exp-7"
    assert [p["model_version"] for p in body["results"]] == ["exp-7"]


def test_local_file_names_are_decoded_once(serve, local_root, image):
    (local_root / "sub dir").mkdir()
    (local_root / "sub dir" / "50%41.png").write_bytes(png_bytes(image))
    served = serve(FetchPolicy(local_files_root=local_root))
    response = post(served, "/predict", predict_body(task("/data/local-files/?d=sub%20dir/50%2541.png")))
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["result"]) == 3


def test_local_files_outside_the_root_or_missing_are_refused(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))
    for d in ("../secret.png", "%2E%2E/secret.png", "sub/../../secret.png", str(local_root.parent / "secret.png"), "/etc/passwd"):
        response = post(served, "/predict", predict_body(task(f"/data/local-files/?d={d}")))
        assert_error(response, 403, "is outside the local-files root")
    assert_error(post(served, "/predict", predict_body(task("/data/local-files/?d=nope.png"))), 404, "local file 'nope.png' does not exist under")
    assert_error(post(served, "/predict", predict_body(task("/data/local-files/?x=photo.png"))), 400, "a local-files URL needs ?d=PATH")


def test_a_file_that_is_not_an_image_is_a_bad_request(serve, local_root):
    (local_root / "notes.png").write_text("not a png")
    served = serve(FetchPolicy(local_files_root=local_root))
    response = post(served, "/predict", predict_body(task("/data/local-files/?d=notes.png")))
    assert response.status_code == 400 and "Traceback" not in response.text and "notes.png" in response.json()["error"]


# -- images fetched from Label Studio --------------------------------------------------------------


def test_upload_fetched_from_label_studio_with_the_token_relative_and_absolute(serve, fake_ls, pipeline, local_root):
    ls = fake_ls()
    served = serve(FetchPolicy(label_studio_url=ls.url, token=LEGACY_TOKEN, timeout_s=5))
    expected = pipeline.segment(local_root / "photo.png", pipeline.vocabulary(["car", "road"]))
    for url in (UPLOAD, ls.url + UPLOAD):
        response = post(served, "/predict", predict_body(task(url)))
        assert response.status_code == 200, response.text
        regions = response.json()["results"][0]["result"]
        assert len(regions) == len(expected.segments)
        for region, segment in zip(regions, expected.segments):
            np.testing.assert_array_equal(brush_mask(region), expected.panoptic_map == segment.id)
    # both URLs name one file: fetched once, with the legacy token, and kept for the next request
    assert ls.requests == [("GET", UPLOAD, f"Token {LEGACY_TOKEN}")]


def test_urls_elsewhere_are_refused_without_a_request(serve, fake_ls, tmp_path, local_root):
    ls, other = fake_ls(), fake_ls()
    served = serve(FetchPolicy(label_studio_url=ls.url, token=LEGACY_TOKEN, timeout_s=5))
    other_host = other.url.replace("127.0.0.1", "localhost")
    for url in (other.url + UPLOAD, other_host + UPLOAD, "//" + other.url.split("//")[1] + UPLOAD, "https://" + ls.url.split("//")[1] + UPLOAD):
        assert_error(post(served, "/predict", predict_body(task(url))), 403, "is not on Label Studio's own address")
    photo = local_root / "photo.png"
    data_url = "data:image/png;base64," + base64.b64encode(photo.read_bytes()).decode()
    for url, scheme in ((f"file://{photo}", "file"), ("file:///etc/passwd", "file"), ("s3://b/k", "s3"), (data_url, "data")):
        assert_error(post(served, "/predict", predict_body(task(url))), 400, f"image URL scheme {scheme!r} is not supported")
    assert_error(post(served, "/predict", predict_body(task("photo.png"))), 400, "is neither absolute nor relative to Label Studio")
    assert_error(post(served, "/predict", predict_body(task(""))), 400, "the task has no image URL")
    assert other.requests == [] and ls.requests == []


def test_label_studio_failures_are_bad_gateway_and_redirects_not_followed(serve, fake_ls):
    other = fake_ls()
    ls = fake_ls(redirect_to=other.url + UPLOAD)
    served = serve(FetchPolicy(label_studio_url=ls.url, token=LEGACY_TOKEN, timeout_s=5))
    assert_error(post(served, "/predict", predict_body(task("/redirect.png"))), 502, "Label Studio redirected the image request (302)")
    assert other.requests == []
    assert_error(post(served, "/predict", predict_body(task("/data/upload/1/gone.png"))), 502, "Label Studio answered 404 for the image")
    wrong = serve(FetchPolicy(label_studio_url=ls.url, token="wrong-token", timeout_s=5))
    assert_error(post(wrong, "/predict", predict_body(task(UPLOAD))), 502, "Label Studio answered 401 for the image")
    closed = serve(FetchPolicy(label_studio_url="http://127.0.0.1:9", timeout_s=5))  # the discard port: nobody listens
    assert_error(post(closed, "/predict", predict_body(task(UPLOAD))), 502, "cannot fetch the image from Label Studio (ConnectError")


def test_images_over_the_size_limit_are_refused(serve, fake_ls):
    ls = fake_ls()
    size = len(ls.png)
    at_limit = serve(FetchPolicy(label_studio_url=ls.url, token=LEGACY_TOKEN, max_image_bytes=size, timeout_s=5))
    assert post(at_limit, "/predict", predict_body(task(UPLOAD))).status_code == 200
    below = serve(FetchPolicy(label_studio_url=ls.url, token=LEGACY_TOKEN, max_image_bytes=size - 1, timeout_s=5))
    assert_error(post(below, "/predict", predict_body(task(UPLOAD))), 413, f"is over {size - 1} bytes (raise --max-image-mb)")


def test_a_personal_access_token_is_exchanged_for_a_bearer_token(serve, fake_ls):
    ls = fake_ls(expected_auth=f"Bearer {ACCESS}")
    served = serve(FetchPolicy(label_studio_url=ls.url, token=JWT, timeout_s=5))
    assert post(served, "/predict", predict_body(task(UPLOAD))).status_code == 200
    assert ls.requests == [("POST", "/api/token/refresh/", None), ("GET", UPLOAD, f"Bearer {ACCESS}")]
    # the access token is kept: a second image needs no second exchange
    assert_error(post(served, "/predict", predict_body(task("/data/upload/1/other.png"))), 502, "Label Studio answered 404")
    assert ls.requests[2:] == [("GET", "/data/upload/1/other.png", f"Bearer {ACCESS}")]
    refused = serve(FetchPolicy(label_studio_url=ls.url, token=JWT.replace("c2ln", "bad"), timeout_s=5))
    assert_error(post(refused, "/predict", predict_body(task(UPLOAD))), 502, "Label Studio refused the API token (401)")


@pytest.mark.parametrize("url", [UPLOAD, "/ls" + UPLOAD])
def test_label_studio_under_a_sub_path_gets_the_token_refresh_and_the_image_there(serve, fake_ls, url):
    ls = fake_ls(expected_auth=f"Bearer {ACCESS}", prefix="/ls")
    served = serve(FetchPolicy(label_studio_url=ls.url + "/ls", token=JWT, timeout_s=5))
    response = post(served, "/predict", predict_body(task(url)))
    assert response.status_code == 200, response.text
    assert ls.requests == [("POST", "/ls/api/token/refresh/", None), ("GET", "/ls" + UPLOAD, f"Bearer {ACCESS}")]


def test_a_token_refresh_that_is_not_there_says_to_check_the_url_not_the_token(serve, fake_ls):
    ls = fake_ls(expected_auth=f"Bearer {ACCESS}", prefix="/ls")
    served = serve(FetchPolicy(label_studio_url=ls.url, token=JWT, timeout_s=5))  # the sub-path left out
    message = assert_error(post(served, "/predict", predict_body(task(UPLOAD))), 502, f"Label Studio's token refresh {ls.url}/api/token/refresh/ answered 404")
    assert "check --label-studio-url" in message and "refused" not in message


def test_absolute_local_files_urls_are_read_from_the_root(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))
    for url in ("http://labelstudio.example:8080/data/local-files/?d=photo.png", "https://host/ls/data/local-files/?d=photo.png"):
        response = post(served, "/predict", predict_body(task(url)))
        assert response.status_code == 200, response.text
        assert len(response.json()["results"][0]["result"]) == 3
    assert_error(post(served, "/predict", predict_body(task("http://host/data/local-files/?d=../x.png"))), 403, "is outside the local-files root")


def test_one_bad_task_is_skipped_and_the_others_kept(serve, local_root, caplog):
    served = serve(FetchPolicy(local_files_root=local_root))
    tasks = [task("/data/local-files/?d=photo.png", 1), task("/data/local-files/?d=nope.png", 2), task("/data/local-files/?d=photo.png", 3)]
    with caplog.at_level("WARNING", logger="ovpanoptic.serve.label_studio"):
        response = post(served, "/predict", predict_body(*tasks))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [len(r["result"]) if isinstance(r, dict) else r for r in results] == [3, [], 3]
    assert "task 2 skipped: local file 'nope.png' does not exist under" in caplog.text
    # every task bad: the request fails, saying why
    assert_error(post(served, "/predict", predict_body(tasks[1], task("/data/local-files/?d=gone.png", 4))), 400, "no task could be answered")


def test_tasks_past_the_time_budget_are_left_for_the_next_request(serve, local_root, caplog):
    served = serve(FetchPolicy(local_files_root=local_root), predict_budget_s=1e-9)
    tasks = [task("/data/local-files/?d=photo.png", k) for k in (1, 2, 3)]
    with caplog.at_level("WARNING", logger="ovpanoptic.serve.label_studio"):
        results = post(served, "/predict", predict_body(*tasks)).json()["results"]
    assert len(results[0]["result"]) == 3 and results[1:] == [[], []]
    assert "2 of 3 tasks left unanswered" in caplog.text


def test_the_default_model_version_differs_from_the_exporters_and_names_the_start(serve):
    version = serve().backend.model_version
    assert re.fullmatch(r"ovpanoptic-0\.1\.0-serve-\d{8}T\d{6}", version), version


def test_a_token_refresh_answer_without_an_access_token_is_bad_gateway(serve, fake_ls):
    for answer in (b"<html>login</html>", b'{"detail": "ok"}', b"[1]"):
        ls = fake_ls(expected_auth=f"Bearer {ACCESS}", refresh_answer=answer)
        served = serve(FetchPolicy(label_studio_url=ls.url, token=JWT, timeout_s=5))
        assert_error(post(served, "/predict", predict_body(task(UPLOAD))), 502, "Label Studio's token refresh gave no access token")
        assert [r[0] for r in ls.requests] == ["POST"]


class SlowTiles(TilesGenerator):
    """Tiles, a fifth of a second per image (the model lock is held meanwhile)."""

    def generate(self, image: Any, *, progress: Any = None) -> Any:
        time.sleep(0.2)
        return super().generate(image, progress=progress)


class SlowPlugin:
    @hookimpl
    def register_proposal_generators(self, register: Any) -> None:
        register("slow-tiles", SlowTiles, config=TilesConfig)


def test_images_waiting_for_the_model_are_kept_until_read(serve, fake_ls, image):
    """More images than the fetch cache holds arrive together: each waits for the model with its
    file fetched, and no later fetch removes a file before its request has read it."""
    paths = [f"/data/upload/1/img{i}.png" for i in range(7)]
    ls = fake_ls(extra={p: png_bytes(np.roll(image, i, axis=1)) for i, p in enumerate(paths)})
    served = serve(FetchPolicy(label_studio_url=ls.url, timeout_s=5), pipe=fake_pipeline(SlowPlugin(), generator="slow-tiles"))
    answers: dict[str, httpx.Response] = {}

    def ask(path: str) -> None:
        answers[path] = post(served, "/predict", predict_body(task(path)), timeout=30)

    threads = [threading.Thread(target=ask, args=(p,)) for p in paths + paths[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert {p: a.status_code for p, a in answers.items()} == dict.fromkeys(paths, 200), [a.text for a in answers.values()]
    assert all(len(a.json()["results"][0]["result"]) == 3 for a in answers.values())
    # the fetched files are removed once read: no more than the cache's few stay on disk
    assert len(list(served.backend._fetcher._dir.iterdir())) <= 4


def test_interactive_clicks_on_an_image_over_the_pixel_limit_decode_nothing(serve, local_root, monkeypatch):
    pipe = Pipeline(
        Config.from_dict({"pipeline": {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint",
                                       "exporters": ["label-studio"], "max_pixels": HEIGHT * WIDTH - 1}}),
        registry=registry_with(FakeComponentsPlugin()), device="cpu",
    )
    served = serve(FetchPolicy(local_files_root=local_root), pipe=pipe)
    decoded: list[tuple[int, int]] = []
    load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or load(self))
    for context in (None, [keypoint(50, 50)]):
        response = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"), context=context))
        assert_error(response, 400, f"is {WIDTH} x {HEIGHT} pixels (0.000768 megapixels), over the limit")
    assert decoded == []


def test_images_on_label_studio_need_its_url(serve):
    served = serve(FetchPolicy())
    assert_error(post(served, "/predict", predict_body(task(UPLOAD))), 400, "the backend was started without --label-studio-url")


# -- interactive /predict ----------------------------------------------------------------------------


def keypoint(x: float, y: float, label: str | None = "road", positive: bool = True) -> dict[str, Any]:
    value: dict[str, Any] = {"x": x, "y": y, "width": 0.6}
    if label is not None:
        value["keypointlabels"] = [label]
    return {"id": "k1", "from_name": "kp", "to_name": "img", "type": "keypointlabels", "origin": "manual",
            "original_width": WIDTH, "original_height": HEIGHT, "is_positive": positive, "value": value}


def rectangle(x: float, y: float, w: float, h: float, label: str = "car") -> dict[str, Any]:
    return {"id": "r1", "from_name": "rect", "to_name": "img", "type": "rectanglelabels", "origin": "manual",
            "original_width": WIDTH, "original_height": HEIGHT,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


@pytest.mark.parametrize(
    ("context", "points", "labels", "box", "label"),
    [
        # a click at 75 % x 25 %: pixel (24, 6), in the top-right tile
        ([keypoint(75, 25)], [[24.0, 6.0]], [1], None, "road"),
        # a box at 12.5 %, 50 %, 25 % x 25 %: pixels x 4..12, y 12..18
        ([rectangle(12.5, 50, 25, 25)], [], [], (4.0, 12.0, 12.0, 18.0), "car"),
        # a box (bottom-left tile), a positive click top right, a negative one bottom right: the label is the last one named
        ([rectangle(12.5, 50, 25, 25), keypoint(75, 25, "car"), keypoint(75, 75, None, positive=False)],
         [[24.0, 6.0], [24.0, 18.0]], [1, 0], (4.0, 12.0, 12.0, 18.0), "car"),
    ],
)
def test_interactive_click_is_one_region_equal_to_segment_prompt(serve, pipeline, local_root, context, points, labels, box, label):
    served = serve(FetchPolicy(local_files_root=local_root))
    response = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"), context=context))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == served.backend.model_version
    (prediction,) = body["results"]
    (region,) = prediction["result"]
    prompt = Prompt(points_xy=np.array(points, np.float32).reshape(-1, 2), point_labels=np.array(labels, np.int32), box_xyxy=box)
    expected = pipeline.segment_prompt(local_root / "photo.png", prompt)
    assert len(expected.masks) == 1 and expected.masks[0].any()
    assert (region["type"], region["from_name"], region["to_name"]) == ("brushlabels", "seg", "img")
    assert region["value"]["brushlabels"] == [label]
    assert (region["original_width"], region["original_height"]) == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(brush_mask(region), expected.masks[0])
    assert region["score"] == prediction["score"] == 1.0


def test_interactive_prompt_that_selects_nothing_gives_no_region(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))
    # a box inside the top-left tile, and a negative click in that tile
    context = [rectangle(12.5, 12.5, 12.5, 12.5), keypoint(25, 25, None, positive=False)]
    body = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"), context=context)).json()
    assert body["results"] == [{"model_version": served.backend.model_version, "score": 0.0, "result": []}]


def test_interactive_requests_the_backend_cannot_answer(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))

    def ask(context: list[Any]) -> httpx.Response:
        return post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"), context=context))

    assert_error(ask([keypoint(50, 50, "tree")]), 400, "label 'tree' is not one of the project's BrushLabels labels")
    brush = {"type": "brushlabels", "value": {"format": "rle", "rle": [1, 2], "brushlabels": ["car"]}}
    assert_error(ask([brush]), 400, "context regions must be keypointlabels or rectanglelabels, got 'brushlabels'")
    polygon = {"type": "polygonlabels", "value": {"points": [[1, 1], [5, 5], [1, 5]], "polygonlabels": ["car"]}}
    assert_error(ask([polygon]), 400, "context regions must be keypointlabels or rectanglelabels, got 'polygonlabels'")
    assert_error(ask([keypoint(50, 50, None)]), 400, "the context regions carry no label: pick a label before clicking")
    assert_error(ask(["a click"]), 400, "each context result must be a region with a 'value'")
    assert_error(ask([{"type": "keypointlabels", "value": {"y": 5, "keypointlabels": ["car"]}}]), 400, "a keypointlabels region needs numeric 'x' and 'y'")
    no_size = rectangle(10, 10, 10, 10)
    del no_size["value"]["width"]
    assert_error(ask([no_size]), 400, "a rectanglelabels region needs numeric 'width' and 'height'")
    response = ask([keypoint(150, 50, "car")])  # outside the image
    assert response.status_code == 400 and "Traceback" not in response.text


def test_interactive_needs_a_generator_that_segments_prompts(serve, local_root):
    class Grid(TilesGenerator):
        segment_prompt = None  # type: ignore[assignment]

    class GridPlugin:
        @hookimpl
        def register_proposal_generators(self, register: Any) -> None:
            register("grid", Grid, config=TilesConfig)

    served = serve(FetchPolicy(local_files_root=local_root), pipe=fake_pipeline(GridPlugin(), generator="grid"))
    response = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png"), context=[keypoint(50, 50)]))
    assert_error(response, 400, "proposal generator 'grid' cannot segment clicks or boxes")


# -- malformed requests --------------------------------------------------------------------------


def test_malformed_predict_bodies(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))
    assert_error(post(served, "/predict", content=b"{not json"), 400, "the request body is not JSON")
    assert_error(post(served, "/predict", content=b"\xff\xfe"), 400, "the request body is not JSON")
    assert_error(post(served, "/predict", [1, 2]), 400, "the request body must be a JSON object")
    for tasks in (None, [], "a", [1], {"id": 1}):
        body = {"label_config": PROJECT_CONFIG} | ({} if tasks is None else {"tasks": tasks})
        assert_error(post(served, "/predict", body), 400, "'tasks' must be a non-empty list of task objects")
    assert_error(post(served, "/predict", {"tasks": [task("x")]}), 400, "the request has no labelling config")
    assert_error(post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png", 5, key="image"))), 400,
                 "task 5 has no data field 'photo' (the Image tag's value)")
    assert_error(post(served, "/predict", predict_body({"id": 6})), 400, "task 6 has no data field 'photo'")


def test_wrong_methods_and_paths(serve):
    served = serve()
    assert_error(get(served, "/predict"), 405, "GET is not allowed on /predict")
    assert_error(get(served, "/setup"), 405, "GET is not allowed on /setup")
    assert_error(post(served, "/health", {}), 405, "POST is not allowed on /health")
    assert_error(httpx.put(served.url + "/predict", content=b"{}", timeout=10), 405, "method PUT is not allowed: use GET or POST")
    assert_error(httpx.delete(served.url + "/predict", timeout=10), 405, "method DELETE is not allowed")
    assert_error(get(served, "/nope"), 404, f"no endpoint /nope; endpoints: {ENDPOINTS}")
    assert_error(post(served, "/train", {}), 501, "ovpanoptic is zero-shot and does not train")
    assert_error(post(served, "/webhook", {"action": "ANNOTATION_CREATED"}), 501, "does not train")


def test_every_answer_of_the_http_layer_is_json(serve):
    served = serve()
    for method in ("OPTIONS", "TRACE", "DELETE", "PUT"):  # one answer for every method but GET and POST
        response = httpx.request(method, served.url + "/predict", timeout=10)
        assert_error(response, 405, f"method {method} is not allowed: use GET or POST")
    # a request line without a version is HTTP/0.9: the answer is the body alone
    assert json.loads(raw_exchange(served.port, b"NONSENSE\r\n\r\n")) == {"error": "Bad request syntax ('NONSENSE')"}
    status, headers, body = raw_request(served.port, b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n")
    assert (status, headers["Content-Type"]) == (431, "application/json")
    assert json.loads(body) == {"error": "Too many headers"}
    status, headers, body = raw_request(served.port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert (status, headers["Content-Type"], json.loads(body)) == (414, "application/json", {"error": "Request-URI Too Long"})
    response = httpx.head(served.url + "/health", timeout=10)
    assert (response.status_code, response.headers["Content-Type"], response.content) == (405, "application/json", b"")


def test_post_needs_a_length_and_a_body_over_the_limit_is_not_read(serve):
    served = serve(options=ServeOptions(port=0, max_request_bytes=4096))
    status, headers, body = raw_request(served.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n")
    assert status == 411 and json.loads(body) == {"error": "a POST needs a Content-Length header"}
    for length in ("ten", "-1"):
        status, _, body = raw_request(served.port, f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        assert status == 400 and json.loads(body) == {"error": f"Content-Length {length!r} is not a number of bytes"}
    # 4097 announced, 2 sent: a server that read the body would wait for the rest
    start = time.monotonic()
    status, headers, body = raw_request(served.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n{}", timeout=3)
    assert time.monotonic() - start < 2
    assert status == 413 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": "the request body is 4097 bytes; the limit is 4096 (raise it with --max-request-mb)"}
    status, _, body = raw_request(served.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n{}", timeout=3)
    assert status == 413
    assert_error(post(served, "/predict", content=b"x" * 5000), 413, "the request body is 5000 bytes; the limit is 4096")
    assert_error(post(served, "/predict", content=b"x" * 4096), 400, "the request body is not JSON")  # at the limit: read


def test_a_failing_plugin_is_a_server_error_and_the_server_goes_on(serve, local_root, caplog):
    class Broken(TilesGenerator):
        def generate(self, image: Any, *, progress: Any = None) -> Any:
            raise RuntimeError("generator bug")

    class BrokenPlugin:
        @hookimpl
        def register_proposal_generators(self, register: Any) -> None:
            register("broken", Broken, config=TilesConfig)

    served = serve(FetchPolicy(local_files_root=local_root), pipe=fake_pipeline(BrokenPlugin(), generator="broken"))
    with caplog.at_level(logging.ERROR, logger="ovpanoptic.serve"):
        response = post(served, "/predict", predict_body(task("/data/local-files/?d=photo.png")))
    message = assert_error(response, 500, "raised RuntimeError: generator bug")
    assert "'broken'" in message and "BrokenPlugin" in message
    assert "generator bug" in caplog.text
    assert get(served, "/health").status_code == 200


def test_an_unexpected_exception_is_a_500_whose_traceback_stays_in_the_log(caplog):
    class Exploding:
        def handle(self, method: str, path: str, body: bytes) -> Reply:
            if path == "/ok":
                return Reply(200, {"ok": True})
            raise KeyError("secret detail")

    stops: list[Callable[[], None]] = []
    try:
        url, _ = _serve_in_thread(Exploding(), ServeOptions(port=0), stops)
        with caplog.at_level(logging.ERROR, logger="ovpanoptic.serve.http"):
            response = get(url, "/boom")
        assert_error(response, 500, "internal error: the request failed in the server; its log has the details")
        assert "secret detail" not in response.text
        assert "GET /boom failed" in caplog.text and "secret detail" in caplog.text
        assert get(url, "/ok").json() == {"ok": True}
    finally:
        for stop in stops:
            stop()


# -- authentication and exposure ------------------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth(serve):
    served = serve(options=ServeOptions(port=0, basic_auth=("ann", "se:cret")))
    response = get(served, "/health")
    assert_error(response, 401, "authentication required: send HTTP Basic credentials")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="ovpanoptic"'
    for headers in (basic("ann", "wrong"), basic("bob", "se:cret"), basic("ann", "se"), {"Authorization": "Basic !!!"},
                    {"Authorization": "Bearer se:cret"}, {"Authorization": "Basic " + base64.b64encode(b"\xff:x").decode()}):
        assert_error(get(served, "/health", headers=headers), 401, "authentication required")
    assert_error(post(served, "/predict", [1], headers=basic("ann", "wrong")), 401, "authentication required")
    assert get(served, "/health", headers=basic("ann", "se:cret")).json()["status"] == "UP"
    assert get(served, "/health", auth=("ann", "se:cret")).status_code == 200
    assert_error(post(served, "/predict", [1], auth=("ann", "se:cret")), 400, "the request body must be a JSON object")


def test_serve_options_refuse_bad_values():
    for auth in (("", "pw"), ("ann", ""), ("a:b", "pw")):
        with pytest.raises(ValueError, match=r"^basic auth needs USER:PASSWORD with a non-empty user \(no ':'\) and password$"):
            ServeOptions(basic_auth=auth)
    for port in (-1, 65536):
        with pytest.raises(ValueError, match=f"^port must be in 0..65535, got {port}$"):
            ServeOptions(port=port)
    with pytest.raises(ValueError, match="^the request size limit must be at least 1 KiB, got 1023 bytes$"):
        ServeOptions(max_request_bytes=1023)
    with pytest.raises(ValueError, match="the Label Studio URL must be http"):
        FetchPolicy(label_studio_url="ftp://x")
    with pytest.raises(ValueError, match="is not a folder"):
        FetchPolicy(local_files_root=Path("/nonexistent-ovpanoptic"))


def test_check_exposure():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(ServeOptions(host=host))
    check_exposure(ServeOptions(host="0.0.0.0", basic_auth=("ann", "pw")))
    check_exposure(ServeOptions(host="0.0.0.0", no_auth=True))
    with pytest.raises(InputError, match="^refusing to serve on 0.0.0.0 without authentication: .* Add --basic-auth USER:PASSWORD"):
        check_exposure(ServeOptions(host="0.0.0.0"))
    with pytest.raises(InputError, match="refusing to serve on 192.168.1.5 without authentication"):
        make_server(object(), ServeOptions(host="192.168.1.5", port=0))  # type: ignore[arg-type]


# -- the command line ---------------------------------------------------------------------------------


def serve_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    fakes = [arg for o in FAKE_OVERRIDES for arg in ("--set", o)]
    code = main(["serve", "label-studio", *fakes, "--device", "cpu", *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_print_config(with_plugins):
    code, out, err = serve_cli("--print-config", "--classes", "car, road")
    assert code == 0, err
    root = ET.fromstring(out)
    (image,) = root.iter("Image")
    assert image.get("value") == "$image"
    for tag in ("BrushLabels", "KeyPointLabels", "RectangleLabels"):
        (element,) = root.iter(tag)
        assert element.get("toName") == image.get("name")
        assert [label.get("value") for label in element.iter("Label")] == ["car", "road"]
    assert next(root.iter("KeyPointLabels")).get("smart") == "true"
    code, out, err = serve_cli("--print-config")
    assert (code, out) == (2, "")
    assert "--print-config needs the classes: give --classes or --vocabulary" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "refusing to serve on 0.0.0.0 without authentication: anyone who can reach this machine"),
        (["--host", "0.0.0.0"], "Add --basic-auth USER:PASSWORD"),
        (["--basic-auth", "nocolon"], "--basic-auth must be USER:PASSWORD"),
        (["--basic-auth", ":pw"], "basic auth needs USER:PASSWORD with a non-empty user (no ':') and password"),
        (["--max-request-mb", "0"], "--max-request-mb must be a positive number of megabytes, got 0.0"),
        (["--max-image-mb", "-1"], "--max-image-mb must be a positive number of megabytes, got -1.0"),
        (["--label-studio-url", "localhost:8080"], "the Label Studio URL must be http(s)://HOST[:PORT], got 'localhost:8080'"),
        (["--local-files-root", "/nonexistent-ovpanoptic"], "the local-files root /nonexistent-ovpanoptic is not a folder"),
    ],
)
def test_cli_refuses_unsafe_or_bad_options(with_plugins, monkeypatch, args, message):
    monkeypatch.delenv("OVPANOPTIC_BASIC_AUTH", raising=False)
    code, out, err = serve_cli(*args)
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err


def test_cli_serves_with_its_options(with_plugins, monkeypatch, local_root):
    """``serve label-studio`` end to end: the server it starts (port 0) is asked for health and a
    prediction, then stopped by SIGTERM, which ends in the clean shutdown of Ctrl-C."""
    import ovpanoptic.serve as serve_module

    monkeypatch.delenv("OVPANOPTIC_BASIC_AUTH", raising=False)
    real_make_server = serve_module.make_server
    answers: list[httpx.Response] = []

    def make_and_probe(handler: Any, options: ServeOptions, *, on_bind: Any = None) -> Any:
        server = real_make_server(handler, options, on_bind=on_bind)
        serve_forever = server.serve_forever

        def probe() -> None:
            thread = threading.Thread(target=serve_forever, args=(0.05,), daemon=True)
            thread.start()
            url = f"http://127.0.0.1:{server.server_address[1]}"
            try:
                answers.append(get(url, "/health"))
                answers.append(get(url, "/health", auth=("ann", "pw")))
                answers.append(post(url, "/predict", predict_body(task("/data/local-files/?d=photo.png")), auth=("ann", "pw")))
                answers.append(post(url, "/predict", content=b"x" * 2000, auth=("ann", "pw")))
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # stopped as a service manager stops it

        server.serve_forever = probe
        return server

    monkeypatch.setattr(serve_module, "make_server", make_and_probe)
    code, _, err = serve_cli("--port", "0", "--basic-auth", "ann:pw", "--local-files-root", str(local_root), "--max-request-mb", "0.001")
    assert code == 0, err
    assert "Label Studio ML backend on http://127.0.0.1:" in err
    assert [a.status_code for a in answers] == [401, 200, 200, 413]
    assert len(answers[2].json()["results"][0]["result"]) == 3
    assert "the limit is 1048 " in answers[3].json()["error"]


# -- what an outside tester found (each fixed as a kind) ---------------------------------------------


def test_a_scheme_relative_url_on_label_studio_s_own_address_is_fetched(serve, fake_ls):
    ls = fake_ls()
    served = serve(FetchPolicy(label_studio_url=ls.url, token=LEGACY_TOKEN, timeout_s=5))
    response = post(served, "/predict", predict_body(task("//" + ls.url.split("//")[1] + UPLOAD)))
    assert response.status_code == 200, response.text
    assert ls.requests == [("GET", UPLOAD, f"Token {LEGACY_TOKEN}")]


def test_local_file_names_the_file_system_cannot_hold_are_bad_requests(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))
    assert_error(post(served, "/predict", predict_body(task("/data/local-files/?d=%00"))), 400, "local file '\\x00' is not a valid path")


def test_errors_about_a_fetched_image_name_its_url_not_the_server_s_copy(serve, fake_ls):
    ls = fake_ls(extra={"/junk.png": b"hello"})
    served = serve(FetchPolicy(label_studio_url=ls.url, timeout_s=5))
    message = assert_error(post(served, "/predict", predict_body(task("/junk.png"))), 400, "the image /junk.png: not an image file")
    assert "ovpanoptic-ls-" not in message and "/tmp" not in message


def test_a_backend_whose_classes_miss_every_project_label_says_so(serve, pipeline):
    served = serve(vocabulary=pipeline.vocabulary(["tree", "sky"]))
    response = post(served, "/setup", {"project": "1.1", "schema": PROJECT_CONFIG})
    assert_error(response, 422, "none of the project's BrushLabels labels (car, road) is a class of this backend (sky, tree)")


def test_contradicting_auth_options_are_refused():
    with pytest.raises(ValueError, match="--basic-auth and --no-auth contradict each other"):
        ServeOptions(basic_auth=("a", "b"), no_auth=True)


def test_a_silent_client_is_dropped_after_the_idle_timeout(serve):
    served = serve(options=ServeOptions(port=0, idle_timeout_s=0.5))
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\nx")
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, without an answer to the half request
        assert time.monotonic() - started < 4


# -- hostile bodies and bursts -------------------------------------------------------------------


def test_a_deeply_nested_body_is_a_bad_request_not_a_server_error(serve, local_root):
    served = serve(FetchPolicy(local_files_root=local_root))
    deep = b"[" * 200_000 + b"]" * 200_000
    for path in ("/predict", "/setup"):
        assert_error(post(served, path, content=deep), 400, "the request body nests arrays and objects more than 64 levels deep")
    # nested under the limit of the JSON parser, but far deeper than any Label Studio request
    nested: Any = "x"
    for _ in range(500):
        nested = {"a": nested}
    body = predict_body(task("/data/local-files/?d=photo.png")) | {"params": nested}
    assert_error(post(served, "/predict", body), 400, "more than 64 levels deep")


@pytest.mark.parametrize("body", [
    {"tasks": [{"id": 1, "data": "photo.png"}], "label_config": PROJECT_CONFIG},
    {"tasks": [{"id": 1, "data": {"photo": ["/data/local-files/?d=photo.png"]}}], "label_config": PROJECT_CONFIG},
    {"tasks": [{"id": 1, "data": {"photo": "/data/local-files/?d=photo.png"}}], "label_config": ["<View/>"]},
    {"tasks": [{"id": 1, "data": {"photo": "/data/local-files/?d=photo.png"}}], "label_config": PROJECT_CONFIG,
     "params": {"context": "x"}},
    {"tasks": [{"id": 1, "data": {"photo": "/data/local-files/?d=photo.png"}}], "label_config": PROJECT_CONFIG,
     "params": {"context": {"result": "x"}}},
    {"tasks": [{"id": 1, "data": {"photo": "/data/local-files/?d=photo.png"}}], "label_config": PROJECT_CONFIG,
     "params": {"context": {"result": [{"type": "keypointlabels", "value": {"x": "a", "y": 1}}]}}},
    {"tasks": [{"id": 1, "data": {"photo": "/data/local-files/?d=photo.png"}}], "label_config": PROJECT_CONFIG,
     "params": {"context": {"result": [{"type": "rectanglelabels", "value": {"x": 1e308, "y": 1e308, "width": 1e308,
                                                                             "height": 1e308, "rectanglelabels": ["car"]}}]}}},
    {"tasks": [{"id": 1, "data": {"photo": "/data/local-files/?d=photo.png"}}],
     "label_config": '<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><View>&b;</View>'},
])
def test_malformed_and_hostile_bodies_are_client_errors(serve, local_root, body):
    served = serve(FetchPolicy(local_files_root=local_root))
    response = post(served, "/predict", body)
    assert response.status_code < 500, response.text  # a request's fault is never the server's
    if response.status_code >= 400:
        assert set(response.json()) == {"error"} and "Traceback" not in response.text


def test_a_burst_of_twenty_clients_is_queued_and_every_one_answered(pipeline, local_root):
    """20 clients connect while the server accepts none yet (as when a burst arrives faster than it
    accepts): the listen backlog holds them all (socketserver's default of 5 held 6, and the kernel
    dropped the others), then every one gets its answer."""
    backend = LabelStudioBackend(pipeline, None, FetchPolicy(local_files_root=local_root))
    server = make_server(backend, ServeOptions(port=0))
    port = server.server_address[1]
    clients: list[socket.socket] = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    try:
        for index in range(20):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            body = json.dumps(predict_body(task("/data/local-files/?d=photo.png", index))).encode()
            clients[-1].sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        thread.start()
        answers = []
        for client in clients:
            client.settimeout(30)
            data = b""
            while chunk := client.recv(65536):
                data += chunk
            head, _, payload = data.partition(b"\r\n\r\n")
            answers.append((head.split(b" ", 2)[1], len(json.loads(payload)["results"][0]["result"])))
        assert answers == [(b"200", 3)] * 20
    finally:
        for client in clients:
            client.close()
        if thread.is_alive():
            server.shutdown()
            thread.join(5)
        server.server_close()
        backend.close()
