"""docs/labelling.md's "Label Studio, step by step", executed in order against a real Label Studio.

The module starts Label Studio 1.23.2 (``scripts/install-label-studio.sh``; skipped without it, a
failure in CI) with the guide's own command, makes a personal access token the way Account &
Settings does (``POST /api/token/`` in the signed-in session), and runs every ``<!-- run -->`` block
of the guide as written: shell lines through ``bash`` (``ovpanoptic`` is this checkout, given the
fake components: no model weights here), the Python block with this interpreter. The page's clicks
(connect the model, Retrieve Predictions, a click with the smart keypoint tool, accept a prediction)
are made through the API calls the page makes. A step that needs a workaround fails the test.

The browser test then signs in with Chromium, opens a pre-annotated task and checks what the
annotator sees: the image (HTTP 200, decoded at its size), our brush regions with their labels, and
the backend's prediction; its screenshot goes to ``label-studio-task.png``.

Times of the steps are written to ``labelling-guide-times.json``. Both go to ``$OVPANOPTIC_SCREENSHOTS`` when set
(CI keeps them as artefacts; ``OVPANOPTIC_SCREENSHOTS=bench/results`` refreshes the committed copies), else to a
temporary folder: a test run never rewrites tracked files.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sdk = pytest.importorskip("label_studio_sdk")
from conftest import COCO_SAMPLE
from label_studio_server import free_port, require_label_studio, start_label_studio, stop, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "labelling.md"


def _results_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$OVPANOPTIC_SCREENSHOTS`` when set, else a fresh temporary folder (see the module docstring)."""
    folder = os.environ.get("OVPANOPTIC_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("guide-results")
BLOCK = re.compile(r"<!-- run(?:: (?P<kind>[\w-]+))? -->\n\s*```\w*\n(?P<body>.*?)\n\s*```", re.S)
EMAIL, PASSWORD = "annotator@example.com", "ovpanoptic-guide-1"
#: What the test gives ``ovpanoptic segment`` and ``serve``: the fake components (no weights here).
FAKES = ["--set", "pipeline.proposal_generator=tiles", "--set", "pipeline.classifier=cycling", "--set", "pipeline.fuser=paint", "--device", "cpu"]


def guide_blocks() -> list[tuple[str, str]]:
    """``(kind, body)`` of the guide's runnable blocks, in order (kind ``sh`` when unnamed)."""
    text = DOCS.read_text("utf-8")
    start, end = text.index("## Label Studio, step by step"), text.index("### The ML backend's rules")
    return [(m["kind"] or "sh", textwrap.dedent(m["body"])) for m in BLOCK.finditer(text[start:end])]


def _ovpanoptic_shim(folder: Path) -> None:
    """An ``ovpanoptic`` command on PATH that runs this checkout with the fake components."""
    shim = folder / "ovpanoptic"
    shim.write_text(
        "#!/bin/sh\n"
        f'case "$1" in segment|serve) extra="{" ".join(FAKES)}";; *) extra="";; esac\n'
        f'exec {shlex.quote(sys.executable)} -m ovpanoptic "$@" $extra\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)


def _session_token(url: str) -> str:
    """Sign in as the page does and create a personal access token (Account & Settings -> Create)."""
    import httpx

    with httpx.Client(base_url=url, follow_redirects=True, timeout=60) as web:
        web.get("/user/login/")
        answer = web.post(
            "/user/login/", data={"email": EMAIL, "password": PASSWORD, "csrfmiddlewaretoken": web.cookies["csrftoken"]},
            headers={"Referer": f"{url}/user/login/"},
        )
        assert answer.status_code == 200 and "/user/login" not in str(answer.url), answer.text[:500]
        made = web.post("/api/token/", headers={"X-CSRFToken": web.cookies["csrftoken"], "Referer": url})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
    assert token.count(".") == 2  # a JWT refresh token: a personal access token, not a legacy one
    return token


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """Run the guide's steps; yields what a test needs to look at (and stops the servers)."""
    require_label_studio()
    if not COCO_SAMPLE.is_dir():
        pytest.skip("COCO sample fixture not found")
    work = tmp_path_factory.mktemp("guide")
    (work / "labelling" / "photos").mkdir(parents=True)
    for image in sorted((COCO_SAMPLE / "images").glob("*.jpg")):
        shutil.copy(image, work / "labelling" / "photos" / image.name)
    bin_dir = work / "bin"
    bin_dir.mkdir()
    _ovpanoptic_shim(bin_dir)
    port, backend_port = free_port(), free_port()
    fake_site = tmp_path_factory.mktemp("fakes")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
         "--target", str(fake_site), str(ROOT / "tests" / "data" / "fake_components")],
        check=True, capture_output=True,
    )
    env = {
        **os.environ, "HOME": str(work), "PWD": str(work), "OVPANOPTIC_DISABLE_PLUGINS": "",
        "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(fake_site), os.environ.get("PYTHONPATH", "")]),
    }
    for key in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"):
        env.pop(key, None)

    def local(text: str) -> str:  # the guide's port 8080 is this test's free port
        return text.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("127.0.0.1:9090", f"127.0.0.1:{backend_port}")

    blocks = guide_blocks()
    assert [k for k, _ in blocks] == ["label-studio", "sh", "sh", "sh", "backend", "python", "sh"], blocks
    times: dict[str, float] = {}
    outputs: list[str] = []
    processes: list[subprocess.Popen] = []
    state: dict = {"work": work, "times": times, "outputs": outputs, "port": port}
    try:
        # 1. start Label Studio with the guide's settings (plus a test user, a data folder, no browser)
        kind, body = blocks[0]
        words = shlex.split(body.replace("$PWD", str(work)))
        settings = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
        argv = [w for w in words if w not in {f"{k}={v}" for k, v in settings.items()}]
        assert argv[:2] == ["label-studio", "start"] and argv[2:] == ["--port", "8080"], argv
        started = time.monotonic()
        processes.append(start_label_studio(work, port, env=env | settings, username=EMAIL, password=PASSWORD))
        url = f"http://127.0.0.1:{port}"
        times["start Label Studio"] = time.monotonic() - started
        token = _session_token(url)
        state.update(url=url, token=token)

        def run_shell(body: str, step: str) -> str:
            script = "set -e\n" + local(body).replace("YOUR-PERSONAL-ACCESS-TOKEN", token)
            begun = time.monotonic()
            proc = subprocess.run(["bash", "-c", script + "\nenv -0 > .guide-env"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
            times[step] = time.monotonic() - begun
            assert proc.returncode == 0, f"{body}\n{proc.stdout}\n{proc.stderr}"
            env.update(dict(kv.split("=", 1) for kv in (work / ".guide-env").read_text().split("\0") if "=" in kv))
            outputs.append(proc.stdout)
            return proc.stdout

        run_shell(blocks[1][1], "token")  # 2. export URL and token
        assert env["LABEL_STUDIO_URL"] == url and env["LABEL_STUDIO_API_KEY"] == token
        run_shell(blocks[2][1], "segment 2 images")  # 3.
        pushed = run_shell(blocks[3][1], "push (import 2 images)")  # 4.
        project_id = int(re.match(r"project (\d+): 2 tasks imported in 1 request\(s\), model version ovpanoptic-0\.1\.0-push-\d{8}T\d{6}, local files storage \d+\n", pushed)[1])
        client = sdk.LabelStudio(base_url=url, api_key=token)
        state.update(client=client, project_id=project_id)
        # 5. the backend, in the background
        words = shlex.split(local(blocks[4][1]))
        assert words[:3] == ["ovpanoptic", "serve", "label-studio"], words
        backend_log = work / "backend.log"
        with backend_log.open("w") as handle:
            processes.append(subprocess.Popen(
                [str(bin_dir / "ovpanoptic"), *words[1:], "--port", str(backend_port)], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=work,
            ))
        wait_until_up(f"http://127.0.0.1:{backend_port}/health", processes[1], backend_log, 120)
        # 6. Connect Model, interactive on (the page's call)
        ml = client.ml.create(project=project_id, url=f"http://127.0.0.1:{backend_port}", title="ovpanoptic", is_interactive=True)
        assert ml.state in ("CO", "CONNECTED"), ml
        state["ml_id"] = ml.id
        # 7. Retrieve Predictions on every task (the Data Manager action)
        tasks = sorted(client.tasks.list(project=project_id), key=lambda t: t.id)
        begun = time.monotonic()
        client.actions.create(id="retrieve_tasks_predictions", project=project_id, selected_items={"all": True, "excluded": []})
        times["retrieve predictions, per task"] = (time.monotonic() - begun) / len(tasks)
        predictions = {t.id: sorted(client.predictions.list(task=t.id), key=lambda p: p.id) for t in tasks}
        state.update(tasks=tasks, predictions=predictions)
        # 8. a click with the smart keypoint tool (the page's interactive-annotating call), then accept the predictions
        import httpx

        access = httpx.post(f"{url}/api/token/refresh/", json={"refresh": token}).json()["access"]
        click = {"id": "k1", "from_name": "point", "to_name": "image", "type": "keypointlabels", "origin": "manual",
                 "value": {"x": 25.0, "y": 25.0, "width": 1, "keypointlabels": ["person"]}, "is_positive": True}
        begun = time.monotonic()
        answer = httpx.post(
            f"{url}/api/ml/{ml.id}/interactive-annotating", json={"task": tasks[0].id, "context": {"result": [click]}},
            headers={"Authorization": f"Bearer {access}"}, timeout=120,
        )
        times["interactive click"] = time.monotonic() - begun
        state["click"] = answer
        for task in tasks:
            client.annotations.create(id=task.id, result=predictions[task.id][0].result)
        # 9. the snapshot export and the QA command
        begun = time.monotonic()
        script = work / "export_snapshot.py"
        script.write_text(blocks[5][1])
        proc = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        times["snapshot export"] = time.monotonic() - begun
        state["qa"] = run_shell(blocks[6][1], "eval")
        yield state
    finally:
        for process in reversed(processes):
            stop(process)
        results = _results_folder(tmp_path_factory)
        results.mkdir(parents=True, exist_ok=True)
        (results / "labelling-guide-times.json").write_text(json.dumps({k: round(v, 2) for k, v in times.items()}, indent=1) + "\n")


def test_the_guide_runs_as_written_against_label_studio(walked):
    tasks, predictions = walked["tasks"], walked["predictions"]
    assert [t.data["image"] for t in tasks] == ["/data/local-files/?d=photos/000000142238.jpg", "/data/local-files/?d=photos/000000439180.jpg"]
    # each task: the imported prediction, then the backend's, asked for because its model version differs
    for task in tasks:
        versions = [p.model_version for p in predictions[task.id]]
        assert len(versions) == 2 and re.fullmatch(r"ovpanoptic-0\.1\.0-push-\d{8}T\d{6}", versions[0]), versions
        assert re.fullmatch(r"ovpanoptic-0\.1\.0-serve-\d{8}T\d{6}", versions[1]), versions
        assert [r["value"]["brushlabels"] for r in predictions[task.id][1].result] == [r["value"]["brushlabels"] for r in predictions[task.id][0].result]
    # the interactive click: one brush mask labelled with the clicked label
    answer = walked["click"]
    assert answer.status_code == 200, answer.text
    (region,) = answer.json()["data"]["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["person"]
    # the storage was not synced: one task per image (no duplicates for eval)
    assert len(list(walked["client"].tasks.list(project=walked["project_id"]))) == 2
    # the QA command as printed, on Label Studio's own export: the classes came with the tasks
    qa = walked["qa"]
    assert re.search(r"^All\s+\| 100\.000  100\.000  100\.000 ", qa, re.M), qa


def test_the_annotator_sees_the_image_and_our_regions(walked, tmp_path, tmp_path_factory):
    from test_demo_browser import CHROMIUM, CHROMIUM_FLAGS, require

    require(CHROMIUM.is_file(), f"Debian's chromium is not installed ({CHROMIUM}): run scripts/install-test-deps.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed in the venv: run scripts/bootstrap.sh (requirements/lock.txt)")
    url, task = walked["url"], walked["tasks"][1]
    labels = sorted({r["value"]["brushlabels"][0] for r in walked["predictions"][task.id][0].result})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            images: list = []
            page.on("response", lambda r: images.append(r) if "/data/local-files/" in r.url else None)
            calls: list[str] = []  # the page's task requests, in the order they were answered (for a failure's message)
            page.on("response", lambda r: calls.append(f"{r.request.method} {r.url.removeprefix(url)} {r.status}") if "/api/tasks" in r.url else None)
            # nothing leaves this machine (Label Studio's page asks analytics and Sentry hosts)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith((url, "data:", "blob:")) else route.abort())
            try:
                page.goto(f"{url}/user/login/")
                page.fill("input[name=email]", EMAIL)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit], input[type=submit]")
                page.wait_for_url(lambda u: "/user/login" not in u, wait_until="commit")
                # Open the task as a person does: the project's task list first, then a click on the task's row.
                # (Opening /data?task=ID directly races: the page asks for the task, with its annotations and
                # predictions, and for the task list at once, and when the list answers last, its light copy of
                # the task, without them, replaces the full one: an empty region list and no prediction tabs.)
                page.goto(f"{url}/projects/{walked['project_id']}/data", wait_until="commit")
                thumbnail = "img[src$='photos/000000439180.jpg']"
                row = page.get_by_test_id("table-row-wrapper").filter(has=page.locator(thumbnail))
                row.wait_for()  # the list has answered and is drawn
                with page.expect_response(lambda r: r.request.method == "GET" and f"/api/tasks/{task.id}?" in r.url) as opened:
                    row.click()
                assert opened.value.status == 200, calls
                shown = thumbnail  # the task's image and the list's thumbnail of it: the same file
                page.wait_for_selector(shown, state="attached")
                page.wait_for_function(f"() => [...document.querySelectorAll({shown!r})].every(i => i.complete && i.naturalWidth > 0)")
                sizes = page.eval_on_selector_all(shown, "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
                # the annotation accepted from our prediction is selected: its brush regions fill the region list
                page.wait_for_function(_REGIONS_SHOWN, arg=len(walked["predictions"][task.id][0].result))
                tabs = page.locator(".lsf-annotation-button")
                # one tab per annotation and per prediction (the imported one and the backend's); the page shortens
                # a prediction's model version to its first 8 and last 6 characters
                tabs.nth(len(walked["predictions"][task.id])).wait_for()
                names = page.eval_on_selector_all(".lsf-annotation-button__name", "names => names.map(n => n.textContent)")
                drawn = {"annotation": _region_titles(page)}
                # the backend's tab, by its prediction's id and its name: the page names a tab by the model
                # version's first 8 and last 6 characters, so a push and a backend started in the same second
                # show the same name (the id is unique among predictions, the name tells it from an annotation)
                backend = walked["predictions"][task.id][1].model_version
                tab = f".lsf-annotation-button[data-annotation-id='{walked['predictions'][task.id][1].id}']"
                page.locator(tab).filter(has_text=_shortened(backend)).click()
                page.wait_for_selector(f".lsf-annotation-button_selected{tab}:has-text('{_shortened(backend)}')")
                page.wait_for_function(_REGIONS_SHOWN, arg=len(walked["predictions"][task.id][1].result))
                page.get_by_text(backend, exact=True).wait_for()  # the tab's tooltip: the whole model version
                drawn["backend"] = _region_titles(page)
                results = _results_folder(tmp_path_factory)
                results.mkdir(parents=True, exist_ok=True)
                shot = results / "label-studio-task.png"
                page.screenshot(path=str(shot))
                from PIL import Image

                with Image.open(shot) as full:  # a small PNG for the repository: half size, 64 colours
                    small = full.convert("RGB").resize((full.width // 2, full.height // 2)).quantize(64)
                small.save(shot, optimize=True)
                body = page.inner_text("body")
                # what the annotator sees, checked while the page is open (a failure shows the page)
                assert [r.status for r in images if "photos/000000439180.jpg" in r.url][:1] == [200]
                h, w = walked["predictions"][task.id][0].result[0]["original_height"], walked["predictions"][task.id][0].result[0]["original_width"]
                assert sizes and all(size == [w, h] for size in sizes), sizes
                # our brush regions are in the region list, one entry per region, with their labels
                assert "Labeled regions will appear here" not in body
                for which, k in (("annotation", 0), ("backend", 1)):
                    expected = [r["value"]["brushlabels"][0] for r in walked["predictions"][task.id][k].result]
                    assert sorted(drawn[which]) == sorted(expected), (which, drawn[which], expected)
                assert set(labels) <= set(drawn["annotation"])
                # the imported prediction and the backend's are both offered in the task's tabs
                versions = [p.model_version for p in walked["predictions"][task.id]]
                assert sorted(_shortened(v) for v in versions) == sorted(n for n in names if n.startswith("ovpanopt")), names
            except Exception as exc:  # Playwright's timeouts name the selector, not what the page showed
                raise AssertionError(_page_state(page, tmp_path, exc, calls)) from exc
        finally:
            browser.close()


def _page_state(page, folder: Path, exc: BaseException, calls: list[str]) -> str:
    """What the page showed when a step failed: a screenshot and the page's text saved under
    ``folder``, and a message naming both, the page's URL, its task requests in the order they were
    answered, and its text (the last 3000 characters)."""
    shot, text_file = folder / "failure.png", folder / "failure.txt"
    try:
        page.screenshot(path=str(shot), full_page=True)
        text = page.inner_text("body", timeout=10_000)
    except Exception as again:  # the page itself is gone (browser crashed): say so
        text = f"(the page could not be read: {again})"
    text_file.write_text(f"{page.url}\n{text}\n", "utf-8")
    return f"{exc}\nURL: {page.url}\ntask requests, as answered: {calls}\nscreenshot: {shot}\npage text ({text_file}):\n{text[-3000:]}"


#: True once the region list holds N entries (the brush masks are decoded and listed).
_REGIONS_SHOWN = "n => document.querySelectorAll('.lsf-outliner-item__title').length === n"


def _region_titles(page) -> list[str]:
    """The labels of the region list's entries (each entry's title is its label)."""
    return [t.strip() for t in page.eval_on_selector_all(".lsf-outliner-item__title", "ts => ts.map(t => t.textContent)")]


def _shortened(model_version: str) -> str:
    """A prediction's name on its tab: Label Studio shows the first 8 and last 6 characters."""
    return f"{model_version[:8]}...{model_version[-6:]}"
