"""A real Label Studio server (label-studio==1.23.2, its own virtualenv) takes our exports and our ML backend.

Set-up: ``scripts/install-label-studio.sh`` (run by ``bin/test``) installs Label Studio into
``$OVPANOPTIC_LABEL_STUDIO_VENV`` (default ``~/.cache/ovpanoptic/label-studio-1.23.2``); this module (through
``tests/label_studio_server.py``, the start-up the guide test shares)
starts it on 127.0.0.1 with a temporary data folder, a test user and a legacy API token (enabled
with ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``), and stops it at the end. Run alone with
``bin/test tests/test_label_studio_server.py``. Without the venv the tests skip (in CI they fail).

1. A project is created with the generated labelling config, the ``label-studio`` export of the
   oracle pipeline on the two COCO images is imported, and the predictions Label Studio stored are
   read back through the Label Studio SDK: every mask equals ours pixel for pixel.
2. ``ovpanoptic serve label-studio`` (the oracle pipeline) is connected as the project's ML
   backend; a new task (an uploaded image) gets its prediction from it, requested by Label Studio;
   Label Studio's JSON export then scores PQ 100 against the COCO ground truth with ``ovpanoptic eval``.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ovpanoptic.cli import main
from ovpanoptic.imageio import read_image
from ovpanoptic.pipeline import Pipeline

sdk = pytest.importorskip("label_studio_sdk")
from conftest import COCO_SAMPLE
from label_studio_sdk.converter.brush import decode_rle
from label_studio_server import free_port, require_label_studio, start_label_studio, stop, wait_until_up
from formats.test_label_studio import oracle_config

TOKEN = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """``(url, client)`` of a running Label Studio with a test user and token."""
    require_label_studio()
    if not COCO_SAMPLE.is_dir():
        pytest.skip("COCO sample fixture not found")
    tmp = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # Label Studio refuses ML backends on private and loopback addresses by default (SSRF protection);
        # ours is on 127.0.0.1 (docs/labelling.md says the same for a backend on the Label Studio machine).
        "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS": "false",
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(COCO_SAMPLE),
        "HOME": str(tmp),
    }
    process = start_label_studio(tmp, port, env=env, username="test@example.com", password="ovpanoptic-test-1", extra=["--user-token", TOKEN])
    try:
        yield f"http://127.0.0.1:{port}", sdk.LabelStudio(base_url=f"http://127.0.0.1:{port}", api_key=TOKEN)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The oracle pipeline's ``label-studio`` (and COCO) export of the two COCO images."""
    tmp = tmp_path_factory.mktemp("ls-export")
    pipe = Pipeline(oracle_config(COCO_SAMPLE, tmp))
    vocab = pipe.vocabulary(name="coco")
    out = tmp / "out"
    results = {}
    for image_path in sorted((COCO_SAMPLE / "images").glob("*.jpg")):
        image = read_image(image_path)
        results[image_path.stem] = pipe.segment(image, vocab)
        pipe.export(results[image_path.stem], image, out, image_path.stem, finish=False)
    for name in ("coco-panoptic", "label-studio"):
        pipe.component("exporter", name).finish(out, sorted(results))
    return out, results, tmp


def _masks_equal(regions, result) -> None:
    names = {c.id: c.name for c in result.vocabulary.categories}
    h, w = result.image_size
    by_id = {r["id"]: r for r in regions}
    assert sorted(by_id) == sorted(f"s{s.id}" for s in result.segments)
    for segment in result.segments:
        region = by_id[f"s{segment.id}"]
        assert region["value"]["brushlabels"] == [names[segment.category_id]]
        assert (region["original_width"], region["original_height"]) == (w, h)
        alpha = decode_rle(bytes(region["value"]["rle"])).reshape(h, w, 4)[:, :, 3]
        np.testing.assert_array_equal(alpha == 255, result.panoptic_map == segment.id)


def test_label_studio_imports_our_tasks_and_gives_back_the_same_masks(label_studio, exported):
    url, client = label_studio
    out, results, _ = exported
    config = (out / "label-studio.xml").read_text()
    project = client.projects.create(title="ovpanoptic import", label_config=config)
    tasks = json.loads((out / "label-studio.json").read_text())
    client.projects.import_tasks(project.id, request=tasks)
    stored = sorted(client.tasks.list(project=project.id), key=lambda t: t.id)
    assert [t.data["image"] for t in stored] == ["/data/local-files/?d=000000142238.jpg", "/data/local-files/?d=000000439180.jpg"]
    for task, stem in zip(stored, sorted(results)):
        (prediction,) = client.predictions.list(task=task.id)
        assert prediction.model_version == "ovpanoptic-0.1.0"
        assert prediction.score == pytest.approx(np.mean([s.score for s in results[stem].segments]), abs=1e-6)
        _masks_equal(prediction.result, results[stem])


def test_label_studio_asks_our_ml_backend_for_a_new_task(label_studio, exported, tmp_path, capsys):
    import httpx

    url, client = label_studio
    out, results, tmp = exported
    project = client.projects.create(title="ovpanoptic backend", label_config=(out / "label-studio.xml").read_text())
    port = free_port()
    log = tmp_path / "backend.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    with log.open("w") as handle:
        backend = subprocess.Popen(
            [sys.executable, "-m", "ovpanoptic", "serve", "label-studio", "--vocabulary", "coco",
             "--config", str(oracle_config(COCO_SAMPLE, tmp)), "--port", str(port),
             "--basic-auth", "ls:secret-pass", "--label-studio-url", url, "--label-studio-token", TOKEN],
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", backend, log, 120, auth=("ls", "secret-pass"))
        backend_url = f"http://127.0.0.1:{port}"
        ml = client.ml.create(
            project=project.id, url=backend_url, title="ovpanoptic", auth_method="BASIC_AUTH",
            basic_auth_user="ls", basic_auth_pass="secret-pass", is_interactive=False,
        )
        assert ml.state in ("CO", "CONNECTED"), ml
        # A new task: the image uploaded to Label Studio (the backend fetches it from there, with the token).
        image = COCO_SAMPLE / "images" / "000000439180.jpg"
        with image.open("rb") as handle:
            answer = httpx.post(
                f"{url}/api/projects/{project.id}/import", headers={"Authorization": f"Token {TOKEN}"},
                files={"file": (image.name, handle, "image/jpeg")}, timeout=60,
            )
        assert answer.status_code == 201, answer.text
        (task,) = client.tasks.list(project=project.id)
        assert task.data["image"].startswith("/data/upload/")
        client.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": False, "included": [task.id]})
        (prediction,) = client.predictions.list(task=task.id)
        assert re.fullmatch(r"ovpanoptic-0\.1\.0-serve-\d{8}T\d{6}", prediction.model_version), prediction.model_version
        _masks_equal(prediction.result, results["000000439180"])
        # Label Studio's own JSON export (a snapshot with the predictions' regions), scored against the COCO ground truth.
        snapshot = client.projects.exports.create(project.id, title="qa", serialization_options={"predictions": {"only_id": False}})
        deadline = time.monotonic() + 60
        while client.projects.exports.get(project.id, snapshot.id).status != "completed":
            assert time.monotonic() < deadline, "the export did not complete within 60 s"
            time.sleep(0.5)
        export = tmp_path / "export.json"
        export.write_bytes(b"".join(client.projects.exports.download(project.id, snapshot.id, export_type="JSON")))
        gt = tmp_path / "gt.json"
        data = json.loads((COCO_SAMPLE / "panoptic.json").read_text())
        data["annotations"] = [a for a in data["annotations"] if a["file_name"].startswith("000000439180")]
        gt.write_text(json.dumps(data))
        (tmp_path / "gt").symlink_to(COCO_SAMPLE / "panoptic")
        capsys.readouterr()
        code = main(["eval", "--gt", str(gt), "--pred", str(export), "--pred-use", "predictions", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and report["all"]["pq"] == 1.0 and report["n_images"] == 1, report
    finally:
        stop(backend)

