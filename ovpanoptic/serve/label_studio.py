"""Label Studio's ML backend protocol, answered by an ovpanoptic pipeline.

Endpoints (the protocol of Label Studio's ``ml/api_connector.py`` and the ``label-studio-ml``
package, JSON in and out):

``GET /`` and ``GET /health``
    ``{"status": "UP", "model_class": "ovpanoptic", "model_version": ...}``.
``POST /setup``
    ``{"project", "schema": labelling config, ...}`` -> ``{"model_version": ...}``; the labelling
    config is checked (it needs a ``BrushLabels`` tag on an ``Image``).
``POST /predict``
    ``{"tasks": [...], "label_config": ..., "params": {"context": ...}}`` -> ``{"results":
    [prediction per task]}``, in task order; a task whose image cannot be read is answered ``[]``
    (no prediction; the reason is logged) and so are tasks not reached within the request's time
    budget, so one bad task never loses the others. Without a context each task's image is segmented by the pipeline and
    answered with one ``brushlabels`` region per segment (the ``label-studio`` exporter's regions,
    with the project's tag names; classes the project does not list are left out). With a context
    (interactive pre-annotation: the user placed ``keypointlabels`` and/or ``rectanglelabels``
    regions, Label Studio's "smart" tools) the first task is answered with one brush region: SAM 2
    on the image's cached embedding, labelled with the clicked label.
``POST /webhook``, ``POST /train``
    501: ovpanoptic is zero-shot and does not train.
``GET /versions``
    ``{"versions": [model_version]}``.

Images: a task's image URL is resolved by :class:`FetchPolicy`: a relative URL (``/data/upload/..``)
or an absolute one on Label Studio's own origin is fetched from Label Studio (with its API token);
``/data/local-files/?d=PATH`` is read from ``local_files_root`` when given; every other URL (another
host, ``file:``, ``s3:``, ``data:``) is refused with 403 or 400: the server is no proxy. Redirects are
not followed. Images are checked by the pipeline's own reader (size, pixel limit).

Bad requests get 4xx with ``{"error": message}`` (400 malformed JSON or fields, 403 a URL outside
the allowed hosts, 413 an image over the size limit, 422 a labelling config the backend cannot
answer, 502 Label Studio failed to give the image); a plugin's own failure (a
:class:`~ovpanoptic.errors.ComponentError`) is a 500 whose message names the plugin.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import numpy as np

from ..constants import NEGATIVE_POINT, POSITIVE_POINT
from ..errors import ComponentError, ImageReadError, InputError, OvpanopticError
from ..formats.label_studio import (
    LabellingConfigError,
    ProjectConfig,
    local_files_path,
    parse_labelling_config,
    prediction_score,
)
from ..types import Prompt, Vocabulary
from .http import Reply

__all__ = ["BackendError", "FetchPolicy", "LabelStudioBackend", "ProjectConfig", "parse_labelling_config", "read_project"]

log = logging.getLogger(__name__)

#: Images kept on disk after a fetch, so interactive clicks on one image fetch it once.
_IMAGE_CACHE_SIZE = 4

#: Label Studio's API path that exchanges a personal access token for an access token
#: (``jwt_auth/urls.py``: ``api/token/refresh/``; without the slash Django answers a redirect).
_TOKEN_REFRESH = "/api/token/refresh/"

#: Seconds Label Studio waits for a ``/predict`` answer (its ``ML_TIMEOUT_PREDICT``, default 100).
LABEL_STUDIO_PREDICT_TIMEOUT_S: float = 100.0

#: Seconds a ``/predict`` request may segment before the remaining tasks are left for the next request.
DEFAULT_PREDICT_BUDGET_S: float = 80.0


class BackendError(OvpanopticError):
    """A request the backend refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_project(text: Any) -> ProjectConfig:
    """The ``BrushLabels`` tag of a request's labelling config (:func:`~ovpanoptic.formats.label_studio.parse_labelling_config`).

    :raises BackendError: 400 when the request has no config; 422 when the config cannot be answered.
    """
    if not isinstance(text, str) or not text.strip():
        raise BackendError(400, "the request has no labelling config ('label_config' or 'schema' must be the project's XML)")
    try:
        return parse_labelling_config(text)
    except LabellingConfigError as exc:
        raise BackendError(422, str(exc)) from None


@dataclass(frozen=True)
class FetchPolicy:
    """Where task images may come from.

    :param label_studio_url: Label Studio's base URL (``http://127.0.0.1:8080``); relative image
        URLs are fetched from it, and absolute ones only on its origin. ``None``: nothing is fetched.
    :param token: Label Studio API token sent with fetches: a personal access token (a JWT, exchanged
        at ``/api/token/refresh`` for an access token) or a legacy token (``Authorization: Token``).
    :param local_files_root: folder of Label Studio's local-files storage
        (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``): ``/data/local-files/?d=PATH`` is read from it
        directly; a path that leaves it is refused.
    :param max_image_bytes: largest image accepted, in bytes.
    :param timeout_s: seconds to wait for Label Studio.
    :raises ValueError: a URL that is not http(s), or a root that is not a folder.
    """

    label_studio_url: str | None = None
    token: str | None = field(default=None, repr=False)
    local_files_root: Path | None = None
    max_image_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.label_studio_url is not None:
            parts = urlsplit(self.label_studio_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"the Label Studio URL must be http(s)://HOST[:PORT], got {self.label_studio_url!r}")
        if self.local_files_root is not None:
            root = Path(self.local_files_root).expanduser().resolve()
            if not root.is_dir():
                raise ValueError(f"the local-files root {self.local_files_root} is not a folder")
            object.__setattr__(self, "local_files_root", root)

    def join(self, url: str) -> str:
        """The absolute URL of a task URL or API path on Label Studio, under its sub-path if it has one.

        ``/data/upload/1/a.jpg`` on ``http://host/ls`` is ``http://host/ls/data/upload/1/a.jpg``; a path that
        already starts with the sub-path and an absolute URL are kept as they are.
        """
        base = self.label_studio_url or ""
        if urlsplit(url).scheme or url.startswith("//"):
            return urljoin(base, url)
        prefix = urlsplit(base).path.rstrip("/")
        if not url.startswith("/"):
            url = "/" + url
        if prefix and (url == prefix or url.startswith(prefix + "/")):
            return urljoin(base, url)
        return base.rstrip("/") + url

    @property
    def origin(self) -> tuple[str, str] | None:
        if self.label_studio_url is None:
            return None
        parts = urlsplit(self.label_studio_url)
        return parts.scheme, parts.netloc.lower()


class _Fetcher:
    """Resolves task image URLs to local files under :class:`FetchPolicy` (a few kept on disk)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._dir = Path(tempfile.mkdtemp(prefix="ovpanoptic-ls-"))
        self._cache: OrderedDict[str, Path] = OrderedDict()
        self._in_use: dict[Path, int] = {}  # fetched files requests are reading: removed only once released
        self._access: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def local_path(self, url: Any) -> Path:
        """The image file of a task URL; hand it back to :meth:`release` once read (a fetched file
        is not removed while a request holds it).

        :raises BackendError: 400 (not a URL / unsupported scheme / no Label Studio URL configured),
            403 (another host, a path outside the local-files root), 404 (no such local file),
            413 (too large), 502 (Label Studio did not give the image).
        """
        if not isinstance(url, str) or not url.strip():
            raise BackendError(400, "the task has no image URL in the field the labelling config's Image tag reads")
        parts = urlsplit(url)
        if parts.path.rstrip("/").endswith("/data/local-files") and self.policy.local_files_root is not None:
            # Read from the root, whatever host the URL names (Label Studio writes absolute URLs when
            # LABEL_STUDIO_HOST is set): nothing is fetched, and the path is checked against the root.
            if parts.scheme and parts.scheme not in ("http", "https"):
                raise BackendError(400, f"image URL scheme {parts.scheme!r} is not supported ({url[:80]})")
            return self._local_file(url)
        if parts.scheme and parts.scheme not in ("http", "https"):
            raise BackendError(
                400,
                f"image URL scheme {parts.scheme!r} is not supported ({url[:80]}): serve the images through Label "
                "Studio (uploads or local files) so that the backend fetches them from Label Studio",
            )
        if parts.scheme or parts.netloc:  # "//host/x.png" names a host as much as "http://host/x.png"
            self._check_origin(url, parts)
        elif not url.startswith("/"):
            raise BackendError(400, f"image URL {url[:80]!r} is neither absolute nor relative to Label Studio ('/data/...')")
        if self.policy.label_studio_url is None:
            raise BackendError(
                400,
                "the task's image is on Label Studio, but the backend was started without --label-studio-url: start it "
                "with --label-studio-url URL --label-studio-token TOKEN (or --local-files-root for local files)",
            )
        full = self.policy.join(url)
        with self._lock:
            cached = self._cache.get(full)
            if cached is not None and cached.exists():
                self._cache.move_to_end(full)
                self._in_use[cached] = self._in_use.get(cached, 0) + 1
                return cached
        path = self._download(full)
        with self._lock:
            stale = [old] if (old := self._cache.pop(full, None)) is not None else []
            self._cache[full] = path
            self._in_use[path] = 1
            while len(self._cache) > _IMAGE_CACHE_SIZE:
                stale.append(self._cache.popitem(last=False)[1])
            for old in stale:
                if old not in self._in_use:
                    old.unlink(missing_ok=True)
        return path

    def release(self, path: Path) -> None:
        """Done with a path :meth:`local_path` gave: a fetched file no longer cached is removed."""
        with self._lock:
            count = self._in_use.get(path)
            if count is None:  # a local file: never ours to remove
                return
            if count > 1:
                self._in_use[path] = count - 1
            else:
                del self._in_use[path]
                if path not in self._cache.values():
                    path.unlink(missing_ok=True)

    def _check_origin(self, url: str, parts: Any) -> None:
        origin = self.policy.origin
        # A scheme-relative URL (//host/...) takes Label Studio's scheme, as a browser would.
        if origin is None or origin != (parts.scheme or origin[0], parts.netloc.lower()):
            raise BackendError(
                403,
                f"image URL {url[:80]} is not on Label Studio's own address ({self.policy.label_studio_url}); the backend "
                "fetches images only from there (or reads --local-files-root)",
            )

    def _local_file(self, url: str) -> Path:
        name = local_files_path(url)  # decoded as Label Studio decodes it
        if not name:
            raise BackendError(400, "a local-files URL needs ?d=PATH")
        root = self.policy.local_files_root
        assert root is not None  # checked by the caller
        try:
            target = (root / name).resolve()
        except (ValueError, OSError):  # a NUL byte, a name the file system cannot hold
            raise BackendError(400, f"local file {name!r} is not a valid path") from None
        if not target.is_relative_to(root):
            raise BackendError(403, f"local file {name!r} is outside the local-files root {root}")
        if not target.is_file():
            raise BackendError(404, f"local file {name!r} does not exist under {root}")
        return target

    def _headers(self, client: Any, refresh: bool = False) -> dict[str, str]:
        token = self.policy.token
        if not token:
            return {}
        if token.count(".") != 2:  # a legacy token
            return {"Authorization": f"Token {token}"}
        if self._access is None or refresh:
            refresh_url = self.policy.join(_TOKEN_REFRESH)
            answer = client.post(refresh_url, json={"refresh": token})
            if answer.status_code in (401, 403):
                raise BackendError(
                    502,
                    f"Label Studio refused the API token ({answer.status_code}) at {refresh_url}: give a valid personal "
                    "access token (Account & Settings -> Personal Access Token) or a legacy token",
                )
            if answer.status_code != 200:
                raise BackendError(
                    502,
                    f"Label Studio's token refresh {refresh_url} answered {answer.status_code}, not the access token: check "
                    "--label-studio-url (Label Studio's address, with its sub-path if it is published under one)",
                )
            try:
                access = answer.json().get("access")
            except (ValueError, AttributeError):
                access = None
            if not isinstance(access, str) or not access:
                raise BackendError(502, "Label Studio's token refresh gave no access token: check --label-studio-url and the token")
            self._access = access
        return {"Authorization": f"Bearer {self._access}"}

    def _download(self, url: str) -> Path:
        import httpx

        limit = self.policy.max_image_bytes
        name = f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{uuid.uuid4().hex[:8]}{Path(urlsplit(url).path).suffix[:8]}"
        target = self._dir / name
        try:
            with httpx.Client(timeout=self.policy.timeout_s, follow_redirects=False) as client:
                for attempt in (0, 1):
                    with client.stream("GET", url, headers=self._headers(client, refresh=attempt == 1)) as answer:
                        if answer.status_code == 401 and attempt == 0 and self.policy.token:
                            continue
                        if 300 <= answer.status_code < 400:
                            raise BackendError(502, f"Label Studio redirected the image request ({answer.status_code}); redirects are not followed")
                        if answer.status_code != 200:
                            raise BackendError(502, f"Label Studio answered {answer.status_code} for the image {url[:100]}")
                        size = 0
                        with target.open("wb") as handle:
                            for chunk in answer.iter_bytes():
                                size += len(chunk)
                                if size > limit:
                                    handle.close()
                                    target.unlink(missing_ok=True)
                                    raise BackendError(413, f"the image {url[:100]} is over {limit} bytes (raise --max-image-mb)")
                                handle.write(chunk)
                        return target
        except httpx.HTTPError as exc:
            target.unlink(missing_ok=True)  # a part written before the connection broke
            raise BackendError(502, f"cannot fetch the image from Label Studio ({type(exc).__name__}: {exc})") from None
        raise BackendError(502, "Label Studio refused the API token twice")


#: Deepest nesting of arrays and objects accepted in a request body (Label Studio's requests nest
#: fewer than 10 levels); deeper bodies are refused before anything walks them recursively.
MAX_JSON_DEPTH: int = 64


def _json_depth(data: Any) -> int:
    """How deeply arrays and objects nest in parsed JSON (iteratively: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


def _json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object.

    :raises BackendError: 400 when it is not UTF-8 JSON, not an object, or nests more than
        :data:`MAX_JSON_DEPTH` levels.
    """
    too_deep = BackendError(
        400, f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; Label Studio's requests "
        "nest fewer than 10: send the task as Label Studio does"
    )
    try:
        data = json.loads(body.decode("utf-8") or "{}")
    except RecursionError:  # the parser's own recursion limit: far too deep
        raise too_deep from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BackendError(400, f"the request body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BackendError(400, "the request body must be a JSON object")
    if _json_depth(data) > MAX_JSON_DEPTH:
        raise too_deep
    return data


class LabelStudioBackend:
    """Answers Label Studio's ML backend requests with a pipeline (see the module docstring).

    :param pipeline: a :class:`~ovpanoptic.pipeline.Pipeline` (its ``label-studio`` exporter builds the
        regions; its proposal generator answers clicks when it can segment prompts).
    :param vocabulary: the classes; ``None``: each project's ``BrushLabels`` labels.
    :param policy: where images may come from.
    :param model_version: reported to Label Studio (default: the exporter's ``model_version`` with
        ``-serve-`` and the start time, e.g. ``ovpanoptic-0.1.0-serve-20250101T120000``: distinct from
        the version of imported pre-annotations and of an earlier run, since Label Studio asks a
        backend only about tasks without a prediction of the backend's current version).
    :param predict_budget_s: seconds a ``/predict`` request may spend segmenting (default 80, under
        Label Studio's 100 s ``ML_TIMEOUT_PREDICT``); tasks not reached in time get no prediction
        (an empty list), and Label Studio asks for them again at the next "Retrieve predictions".
        ``None``: no bound.
    """

    def __init__(
        self,
        pipeline: Any,
        vocabulary: Vocabulary | None,
        policy: FetchPolicy,
        *,
        model_version: str | None = None,
        predict_budget_s: float | None = DEFAULT_PREDICT_BUDGET_S,
    ) -> None:
        if predict_budget_s is not None and not predict_budget_s > 0:
            raise ValueError(f"the predict budget must be a positive number of seconds, got {predict_budget_s}")
        self.pipeline = pipeline
        self.vocabulary = vocabulary
        self.exporter = pipeline.component("exporter", "label-studio")
        self.model_version = model_version or f"{self.exporter.config.model_version}-serve-{time.strftime('%Y%m%dT%H%M%S')}"
        self.predict_budget_s = predict_budget_s
        self._fetcher = _Fetcher(policy)
        self._model_lock = threading.Lock()
        self._vocabularies: dict[tuple[str, ...], Vocabulary] = {}

    def close(self) -> None:
        """Remove the fetched images."""
        self._fetcher.close()

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        """Answer one request (never raises for bad input: a 4xx reply says what is wrong)."""
        routes = {
            ("GET", "/"): self._health,
            ("GET", "/health"): self._health,
            ("GET", "/versions"): lambda _: Reply(200, {"versions": [self.model_version]}),
            ("POST", "/setup"): self._setup,
            ("POST", "/predict"): self._predict,
            ("POST", "/webhook"): self._no_training,
            ("POST", "/train"): self._no_training,
        }
        route = routes.get((method, path.rstrip("/") or "/"))
        if route is None:
            known = sorted({p for _, p in routes})
            if any(p == (path.rstrip("/") or "/") for _, p in routes):
                return Reply(405, {"error": f"{method} is not allowed on {path}"})
            return Reply(404, {"error": f"no endpoint {path}; endpoints: {', '.join(known)}"})
        try:
            return route(body)
        except BackendError as exc:
            return Reply(exc.status, {"error": str(exc)})
        except ComponentError as exc:  # a plugin's bug, not the request's: its message names the plugin
            log.error("%s %s: %s", method, path, exc, exc_info=exc)
            return Reply(500, {"error": str(exc)})
        except (InputError, OvpanopticError) as exc:  # bad image, bad classes, ...: the request's fault
            return Reply(400, {"error": str(exc)})

    def _health(self, _: bytes) -> Reply:
        return Reply(200, {"status": "UP", "model_class": "ovpanoptic", "model_version": self.model_version})

    def _no_training(self, _: bytes) -> Reply:
        return Reply(501, {"error": "ovpanoptic is zero-shot and does not train: turn training off for this ML backend"})

    def _setup(self, body: bytes) -> Reply:
        data = _json_body(body)
        project = read_project(data.get("schema"))
        self._vocabulary(project)  # refuse classes the pipeline cannot use now, not at the first task
        return Reply(200, {"model_version": self.model_version})

    def _vocabulary(self, project: ProjectConfig) -> Vocabulary:
        if self.vocabulary is not None:
            names = {c.name for c in self.vocabulary.categories}
            if project.labels and not names & set(project.labels):
                raise BackendError(
                    422,
                    f"none of the project's BrushLabels labels ({', '.join(project.labels[:8])}) is a class of this backend "
                    f"({', '.join(sorted(names)[:8])}): predictions would be empty. Start the backend with the project's "
                    "classes (or without --classes/--vocabulary, to take them from the project)",
                )
            return self.vocabulary
        if not project.labels:
            raise BackendError(422, f"the BrushLabels tag {project.from_name!r} has no Label: add the classes to the labelling config")
        key = project.labels
        if key not in self._vocabularies:
            vocabulary = self.pipeline.vocabulary(list(key))
            names = tuple(c.name for c in vocabulary.categories)
            if names != key:  # the regions would carry names the project does not list, and be left out
                raise BackendError(
                    422,
                    f"the BrushLabels labels {', '.join(map(repr, key))} read as the classes {', '.join(map(repr, names))} "
                    "(',' separates classes, '|' synonyms, spaces and letter widths are normalised): rename the labels "
                    "in the labelling config so that each reads as itself, or give the backend --classes",
                )
            self._vocabularies[key] = vocabulary
        return self._vocabularies[key]

    def _predict(self, body: bytes) -> Reply:
        data = _json_body(body)
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, Mapping) for t in tasks):
            raise BackendError(400, "'tasks' must be a non-empty list of task objects")
        project = read_project(data.get("label_config"))
        params = data.get("params") or {}
        context = params.get("context") if isinstance(params, Mapping) else None
        if isinstance(context, Mapping) and context.get("result"):
            return Reply(200, {"results": [self._interactive(tasks[0], project, context["result"])], "model_version": self.model_version})
        vocabulary = self._vocabulary(project)
        # One answer per task, in order (Label Studio pairs them by position): a task that fails is
        # answered with no prediction ([]) and its reason logged, so the others are kept.
        started = time.monotonic()
        results: list[Any] = []
        failed: list[str] = []
        for index, task in enumerate(tasks):
            if index and self.predict_budget_s is not None and time.monotonic() - started > self.predict_budget_s:
                log.warning(
                    "predict: %d of %d tasks left unanswered after %.0f s (the budget under Label Studio's %.0f s timeout); "
                    "'Retrieve predictions' again asks for them",
                    len(tasks) - index, len(tasks), self.predict_budget_s, LABEL_STUDIO_PREDICT_TIMEOUT_S,
                )
                results += [[] for _ in tasks[index:]]
                break
            try:
                results.append(self._segment(task, project, vocabulary))
            except (BackendError, InputError) as exc:
                if len(tasks) == 1:
                    raise
                failed.append(f"task {task.get('id')}: {exc}")
                log.warning("predict: task %s skipped: %s", task.get("id"), exc)
                results.append([])
        if failed and len(failed) == len(tasks):
            raise BackendError(400, f"no task could be answered; {'; '.join(failed[:3])}")
        return Reply(200, {"results": results, "model_version": self.model_version})

    @contextmanager
    def _image(self, task: Mapping[str, Any], project: ProjectConfig) -> Iterator[Path]:
        data = task.get("data")
        if not isinstance(data, Mapping) or project.data_key not in data:
            raise BackendError(400, f"task {task.get('id')} has no data field {project.data_key!r} (the Image tag's value)")
        url = data[project.data_key]
        path = self._fetcher.local_path(url)
        try:
            yield path
        except (ImageReadError, InputError) as exc:  # name the task's image, not the server's copy of it
            raise BackendError(400, str(exc).replace(str(path), f"the image {str(url)[:100]}")) from None
        finally:
            self._fetcher.release(path)

    def _segment(self, task: Mapping[str, Any], project: ProjectConfig, vocabulary: Vocabulary) -> dict[str, Any]:
        with self._image(task, project) as path, self._model_lock:
            result = self.pipeline.segment(path, vocabulary)
        prediction = self.exporter.prediction(result, from_name=project.from_name, to_name=project.to_name)
        allowed = set(project.labels)
        kept = [r for r in prediction["result"] if r["value"][r["type"]][0] in allowed]
        if len(kept) < len(prediction["result"]):
            dropped = sorted({r["value"][r["type"]][0] for r in prediction["result"]} - allowed)
            log.warning("task %s: classes not in the project's BrushLabels left out: %s", task.get("id"), ", ".join(dropped))
        # The prediction's score: the mean over the segments it keeps, as the exporter's is over all.
        score = prediction_score([r["score"] for r in kept if r["type"] == "brushlabels"])
        return {**prediction, "model_version": self.model_version, "score": score, "result": kept}

    def _interactive(self, task: Mapping[str, Any], project: ProjectConfig, context: Sequence[Any]) -> dict[str, Any]:
        from ..imageio import read_image

        with self._image(task, project) as path:  # read once, under the pipeline's pixel limit
            rgb = read_image(path, self.pipeline.config.pipeline.max_pixels)
        height, width = rgb.shape[:2]
        points: list[list[float]] = []
        labels: list[int] = []
        box: tuple[float, float, float, float] | None = None
        label: str | None = None
        for item in context:
            if not isinstance(item, Mapping) or not isinstance(item.get("value"), Mapping):
                raise BackendError(400, "each context result must be a region with a 'value'")
            kind = str(item.get("type", "")).lower()
            if kind not in ("keypointlabels", "rectanglelabels"):
                raise BackendError(400, f"context regions must be keypointlabels or rectanglelabels, got {kind!r}")
            value = item["value"]
            try:
                x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
            except (KeyError, TypeError, ValueError):
                raise BackendError(400, f"a {kind} region needs numeric 'x' and 'y' (percent of the image)") from None
            names = value.get(kind)
            if isinstance(names, list) and names:
                label = str(names[0])
            if kind == "keypointlabels":
                points.append([x, y])
                labels.append(POSITIVE_POINT if item.get("is_positive", True) else NEGATIVE_POINT)
            elif kind == "rectanglelabels":
                try:
                    w, h = float(value["width"]) * width / 100.0, float(value["height"]) * height / 100.0
                except (KeyError, TypeError, ValueError):
                    raise BackendError(400, "a rectanglelabels region needs numeric 'width' and 'height' (percent)") from None
                box = (x, y, x + w, y + h)
        if label is None:
            raise BackendError(400, "the context regions carry no label: pick a label before clicking")
        if project.labels and label not in project.labels:
            raise BackendError(400, f"label {label!r} is not one of the project's BrushLabels labels")
        prompt = Prompt(points_xy=np.array(points, np.float32).reshape(-1, 2), point_labels=np.array(labels, np.int32), box_xyxy=box)
        with self._model_lock:
            proposals = self.pipeline.segment_prompt(rgb, prompt)
        if len(proposals.masks) == 0:
            return {"model_version": self.model_version, "score": 0.0, "result": []}
        score = float(proposals.scores[0])
        region = self.exporter.brush_region(proposals.masks[0], label, score, "click", from_name=project.from_name, to_name=project.to_name)
        return {"model_version": self.model_version, "score": round(score, 6), "result": [region]}
