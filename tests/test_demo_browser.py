"""The demo in a real browser: Debian's chromium (headless, no sandbox, background networking off),
driven by Playwright through the Chrome DevTools protocol, against the app served on 127.0.0.1.

``scripts/install-test-deps.sh`` (run by ``bin/test``) installs chromium. Without it, or without
Playwright, these tests skip with the reason, except in CI (``CI=true``), where they fail.
The page only talks to 127.0.0.1: any other request is aborted and fails the test.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from ovpanoptic.config import Config
from ovpanoptic.demo_app import build_demo, launch_demo
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, registry_with

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "demo" / "examples" / "street.jpg"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
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


@pytest.fixture(scope="module")
def served():
    config = Config.from_dict(
        {"pipeline": {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "exporters": [], "device": "cpu"}}
    )
    demo = build_demo(Pipeline(config, registry=registry_with(FakeComponentsPlugin())))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch_demo(demo, host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    demo.ovpanoptic_app.close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    outside: list[str] = []

    def only_loopback(route):
        host = urlparse(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(served)
    yield page
    context.close()
    assert outside == [], f"the page tried to reach other hosts: {outside}"


def test_upload_type_run_and_see_the_segments(page, tmp_path):
    from playwright.sync_api import expect

    page.locator("#ovp-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#ovp-image img").first.wait_for(state="visible")
    page.locator("#ovp-classes textarea").fill("car, street lamp")
    page.locator("#ovp-stuff textarea").fill("sky, road")
    page.locator("#ovp-run").click()

    legend = page.locator("#ovp-annotated .legend-item")
    expect(legend).to_have_text(["car #1", "street lamp #1", "sky", "road"])
    assert page.locator("#ovp-annotated img.mask").count() == 4
    base = page.locator("#ovp-annotated img.base-image")
    assert base.evaluate("img => img.complete && img.naturalWidth") == 640

    table = page.locator("#ovp-table")
    expect(table).to_contain_text("street lamp #1")
    text = table.inner_text()
    for cell in ("segment", "class", "kind", "area %", "car #1", "street lamp", "thing", "stuff", "sky", "road", "25"):
        assert cell in text
    assert "First run on this image" in page.locator("#ovp-timings").inner_text()
    link = page.locator("#ovp-download a[href]").first
    assert link.get_attribute("href").endswith("/street-coco-panoptic.zip")
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # Re-query with other names: same image, so the timings say the cache answered.
    page.locator("#ovp-classes textarea").fill("bus, lamp post")
    page.locator("#ovp-stuff textarea").fill("")
    page.locator("#ovp-run").click()
    expect(page.locator("#ovp-timings")).to_contain_text("Same image as before")
    expect(page.locator("#ovp-table")).to_contain_text("bus #1")
    expect(page.locator("#ovp-annotated .legend-item")).to_have_text(["bus #1", "lamp post #1", "bus #2", "lamp post #2"])


def test_errors_show_as_messages_without_traceback(page, tmp_path):
    from playwright.sync_api import expect

    page.locator("#ovp-classes textarea").fill("car")
    page.locator("#ovp-run").click()
    expect(page.locator("body")).to_contain_text("No image: upload an image (or click one of the examples) first")
    page.locator("#ovp-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#ovp-image img").first.wait_for(state="visible")
    page.locator("#ovp-classes textarea").fill("car,,tree")
    page.locator("#ovp-run").click()
    expect(page.locator("body")).to_contain_text("class 2 of the Class names box is empty")
    page.screenshot(path=str(tmp_path / "error.png"))
    assert "Traceback" not in page.content()


def test_a_named_vocabulary_from_the_menu_replaces_the_typed_names(page):
    from playwright.sync_api import expect

    page.locator("#ovp-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#ovp-image img").first.wait_for(state="visible")
    page.locator("#ovp-vocabulary input").click()
    page.get_by_role("option", name="tabletop (Robotics tabletop manipulation: 9 classes)").click()
    expect(page.locator("#ovp-classes textarea")).to_be_disabled()
    expect(page.locator("#ovp-classes")).to_contain_text("Using the named vocabulary 'tabletop'")
    page.locator("#ovp-run").click()
    expect(page.locator("#ovp-annotated .legend-item")).to_have_text(
        ["target_object #1", "support_surface", "container #1", "obstacle_rigid #1"]
    )
    expect(page.locator("#ovp-timings")).to_contain_text("9 classes (tabletop)")
