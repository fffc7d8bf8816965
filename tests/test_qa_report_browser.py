"""The QA report (``report.html``) in a real browser: Debian's chromium through Playwright, as
tests/test_demo_browser.py drives it. The page opens from a file, every image decodes, and the
browser makes no request beyond the file itself (everything is embedded).

Screenshots go to ``$OVPANOPTIC_SCREENSHOTS`` when set (CI keeps them as artefacts), else to the
test's temporary folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ovpanoptic.cli import main
from test_qa import _perturbed_copy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 30_000


def require(condition: bool, reason: str) -> None:
    """Skip when a browser prerequisite is missing; in CI, where the set-up installs it, fail."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the test set-up must provide it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    require(CHROMIUM.is_file(), f"Debian's chromium is not installed ({CHROMIUM}): run scripts/install-test-deps.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed in the venv: run scripts/bootstrap.sh (requirements/lock.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def test_report_opens_every_image_loads_and_nothing_is_fetched(browser, coco_sample: Path, tmp_path: Path) -> None:
    _perturbed_copy(coco_sample, tmp_path / "b")
    out = tmp_path / "qa"
    assert main(["qa", "--agreement", str(coco_sample), str(tmp_path / "b"), "-o", str(out)]) == 0
    report = out / "report.html"
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri(), timeout=TIMEOUT_MS)
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({alt: e.alt, complete: e.complete, width: e.naturalWidth, src: e.src.slice(0, 22)}))"
    )
    # bars + heat map + the one image to review (first | second | disagreement)
    assert [i["alt"] for i in images] == [
        "per-class IoU bars", "pixel confusion heat map", "000000439180: annotator A", "000000439180: annotator B",
        "000000439180: disagreement (red)",
    ]
    assert all(i["complete"] and i["width"] > 0 and i["src"] == "data:image/png;base64," for i in images), json.dumps(images)
    assert requests == [report.as_uri()]  # the file itself, nothing else
    assert page.locator("td.fail").all_inner_texts() == ["FAIL", "FAIL"]
    assert "Label QA report (agreement)" in page.inner_text("h1")
    shots = Path(os.environ.get("OVPANOPTIC_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "qa-report.png"), full_page=True)
    assert (shots / "qa-report.png").stat().st_size > 0
    page.close()
