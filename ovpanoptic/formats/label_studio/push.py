"""``ovpanoptic push label-studio``: create or update a Label Studio project from an output folder.

Through the Label Studio SDK (``label-studio-sdk``, the ``labelling`` extra): the project gets the
folder's labelling config (``label-studio.xml``), a "Local files" source storage for the image
folder when one is given (not synced: the tasks come from our file, and a sync would add a second
task per image), and the tasks of ``label-studio.json`` (or its numbered parts), imported in chunks
under Label Studio's 250 MB import limit, their image URLs pointing into that storage and their
predictions carrying a model version of their own (one per push), so that a connected ML backend
is still asked about them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import InputError, MissingDependencyError
from ..common import read_json_file, xml_root
from .urls import local_files_path, local_files_url
from .writer import split_tasks, task_files

__all__ = ["DEFAULT_CHUNK_MB", "PushResult", "one_line", "push_label_studio"]

log = logging.getLogger(__name__)

#: Default largest import request, in MB (Label Studio refuses 250 MB or more).
DEFAULT_CHUNK_MB: float = 200.0


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    :param project_id: the Label Studio project.
    :param url: the project's page.
    :param tasks: tasks imported.
    :param chunks: import requests made.
    :param model_version: the imported predictions' model version.
    :param storage_id: the local-files storage created, if any.
    """

    project_id: int
    url: str
    tasks: int
    chunks: int
    model_version: str
    storage_id: int | None


def _local_files_url(url: str, subfolder: str) -> str:
    """A ``/data/local-files/?d=NAME`` URL with ``subfolder/`` put before ``NAME`` (kept when it is there)."""
    name = local_files_path(url)
    if name is None or not subfolder or name.startswith(subfolder + "/"):
        return url
    return local_files_url(f"{subfolder}/{name}")


#: The longest server message quoted in an error (one line).
_MESSAGE_CHARS: int = 200


def one_line(body: Any) -> str:
    """A server's answer as one short line: JSON as JSON, HTML without its tags, truncated."""
    import re

    if body is None or body == "":
        return "(no message)"
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    if re.search(r"<\s*(html|body|head|title|h1|p|div|!doctype)\b", text, re.IGNORECASE):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = title.group(1) if title else re.sub(r"<[^>]*>", " ", re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text))
        text = "an HTML page: " + " ".join(text.split())
    text = " ".join(text.split()) or "(no message)"
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _check_label_studio(url: str) -> None:
    """``GET /api/version`` (public in Label Studio): refuse an address that answers it with a 404,
    a server error or something that is not JSON before anything is created.

    :raises InputError: naming the request, the status and the fix.
    """
    import httpx

    where = f"{url.rstrip('/')}/api/version"
    try:
        answer = httpx.get(where, timeout=10.0, follow_redirects=False)
    except (OSError, httpx.HTTPError) as exc:
        raise InputError(f"cannot reach Label Studio at {url} (GET /api/version: {exc}): check the URL and that it runs") from None
    if 300 <= answer.status_code < 500 and answer.status_code != 404:
        return  # a login redirect or an auth answer: the push requests say more
    looks = answer.status_code == 200
    if looks:
        try:
            looks = isinstance(answer.json(), dict)
        except ValueError:
            looks = False
    if not looks:
        raise InputError(
            f"{url} does not look like Label Studio: GET /api/version answered {answer.status_code} ({one_line(answer.text)}). "
            "Give Label Studio's address with --label-studio-url (e.g. http://127.0.0.1:8080, no path)"
        )


def push_label_studio(
    outdir: Path,
    *,
    url: str,
    token: str,
    title: str | None = None,
    project_id: int | None = None,
    images: Path | None = None,
    local_files_root: Path | None = None,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    model_version: str | None = None,
    json_name: str = "label-studio.json",
    progress: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Create (or, with ``project_id``, update) a project and import the folder's tasks.

    :param outdir: an output folder of the ``label-studio`` exporter.
    :param url: Label Studio's address (``http://127.0.0.1:8080``).
    :param token: a personal access token or a legacy token.
    :param images: the image folder to connect as "Local files" storage; it must lie *inside*
        ``local_files_root`` (Label Studio refuses a storage at the root itself), and the tasks'
        local-files URLs get its path below the root.
    :param local_files_root: Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``.
    :param chunk_mb: the largest import request, in MB.
    :param model_version: the predictions' model version (default ``ovpanoptic-VERSION-push-TIME``).
    :param progress: called with (tasks imported, all tasks) after each chunk.
    :raises InputError: a folder without the export, an image folder not under the root, a refusal by
        Label Studio (its message is given).
    :raises MissingDependencyError: label-studio-sdk is missing.
    """
    try:
        from label_studio_sdk import LabelStudio
        from label_studio_sdk.core.api_error import ApiError
    except ImportError as exc:
        raise MissingDependencyError(
            f"'ovpanoptic push label-studio' needs label-studio-sdk ({exc}): pip install 'ovpanoptic[labelling]'"
        ) from None
    import httpx

    outdir = Path(outdir)
    if not chunk_mb > 0:
        raise InputError(f"--chunk-mb must be a positive number of megabytes, got {chunk_mb}")
    files = task_files(outdir, json_name)
    config_path = outdir / (json_name[: -len(".json")] + ".xml")
    if not files or not config_path.is_file():
        raise InputError(
            f"{outdir} holds no label-studio export ({json_name} and {config_path.name}): run 'ovpanoptic segment ... "
            "--format label-studio -o OUTDIR' first"
        )
    # Both files are checked here, before anything is connected to.
    root = xml_root(config_path, "", "labelling config", whole=True)
    if root != "View":
        raise InputError(
            f"labelling config {config_path} has the root element <{root}>, not Label Studio's <View>: write it again with "
            "'ovpanoptic segment ... --format label-studio' (or fix it in Label Studio: Settings -> Labeling Interface)"
        )
    subfolder = ""
    if images is not None:
        if local_files_root is None:
            raise InputError("--images needs Label Studio's local-files root: give --local-files-root (or set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
        images, root = Path(images).expanduser().resolve(), Path(local_files_root).expanduser().resolve()
        if not images.is_dir():
            raise InputError(f"--images {images} is not a folder")
        if images == root or not images.is_relative_to(root):
            raise InputError(
                f"--images {images} must be a subfolder of the local-files root {root}: Label Studio refuses a storage at the "
                "root itself. Start Label Studio with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to the images' parent folder"
            )
        subfolder = images.relative_to(root).as_posix()
    version = model_version or f"ovpanoptic-{__version__}-push-{time.strftime('%Y%m%dT%H%M%S')}"
    tasks: list[dict[str, Any]] = []
    for file in files:
        loaded = read_json_file(file, "", "Label Studio tasks file")
        if not isinstance(loaded, list):
            raise InputError(f"Label Studio tasks file {file} is not a list of tasks: write it again with 'ovpanoptic segment ... --format label-studio'")
        tasks.extend(loaded)
    for task in tasks:
        data = task.get("data", {})
        for key, value in data.items():
            if isinstance(value, str):
                data[key] = _local_files_url(value, subfolder)
        for prediction in task.get("predictions", []):
            prediction["model_version"] = version
    chunks = split_tasks(tasks, int(chunk_mb * 1_000_000))
    _check_label_studio(url)
    client = LabelStudio(base_url=url, api_key=token)
    request = ""
    try:
        config = config_path.read_text("utf-8")
        if project_id is None:
            request = "POST /api/projects/ (create the project)"
            project = client.projects.create(title=title or outdir.resolve().name[:50].ljust(3, "_"), label_config=config)
        else:
            request = f"PATCH /api/projects/{project_id}/ (update the project)"
            project = client.projects.update(id=project_id, label_config=config, **({"title": title} if title else {}))
        storage_id = None
        if images is not None:
            request = "POST /api/storages/localfiles/ (connect --images)"
            storage = client.import_storage.local.create(project=project.id, path=str(images), use_blob_urls=True, title=images.name)
            storage_id = storage.id
        done = 0
        for k, chunk in enumerate(chunks, 1):
            part = json.loads(chunk)
            request = f"POST /api/projects/{project.id}/import (tasks, request {k} of {len(chunks)})"
            client.projects.import_tasks(project.id, request=part)
            done += len(part)
            log.info("chunk %d of %d: %d tasks imported", k, len(chunks), len(part))
            if progress is not None:
                progress(done, len(tasks))
    except ApiError as exc:
        body = one_line(exc.body)
        hint = (
            ": the URL does not look like Label Studio; check --label-studio-url" if exc.status_code == 404 or body.startswith("an HTML page")
            else ": check the token (--label-studio-token) and the project id" if exc.status_code in (401, 403)
            else ""
        )
        raise InputError(f"Label Studio at {url} refused the push: {request} answered {exc.status_code} ({body}){hint}") from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused, name not resolved
        raise InputError(f"cannot reach Label Studio at {url} ({request}: {exc}): check the URL and that it runs") from None
    return PushResult(project.id, f"{url.rstrip('/')}/projects/{project.id}/data", len(tasks), len(chunks), version, storage_id)
