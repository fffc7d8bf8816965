"""Screenshots of the demo's main states for docs/demo.md (docs/images/demo-*.png).

The page is served with the deterministic fake components of ``ovpanoptic.testing`` (the test
suite's: ``tiles`` cuts the image into a 2 x 2 grid, ``slow-tiles`` does it slowly), so the
pictures show the workbench, not a model's quality. Debian's chromium through Playwright, at
1400x1000 and 390x844; each PNG is reduced to 256 colours to stay small.

    .venv/bin/python scripts/demo_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def save(page, path: Path, full_page: bool = False) -> None:
    from PIL import Image

    page.screenshot(path=str(path), full_page=full_page)
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"written {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import expect, sync_playwright

    import test_demo_browser as t

    expect.set_options(timeout=60_000)
    url, demo = t.serve("tiles")
    slow_url, slow_demo = t.serve("slow-tiles")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(t.CHROMIUM), headless=True, args=t.CHROMIUM_FLAGS)
            # 1400x1000: a result with a selection, the legend and the buttons naming what they act on
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            t.upload(page)
            t.segment(page, "car, street lamp", "sky, road")
            expect(page.locator("#ovp-status")).to_contain_text("4 segments")
            t.click_image(page, 400, 100)
            expect(page.locator("#ovp-delete")).to_have_text("Delete street lamp #1")
            page.evaluate("window.scrollTo(0, 0)")
            save(page, args.out / "demo-selected-1400.png")
            # a run in progress: the stage with its count and estimate in the status line
            slow = browser.new_page(viewport={"width": 1400, "height": 1000})
            slow.goto(slow_url)
            t.upload(slow)
            t.segment(slow, "car")
            expect(slow.locator("#ovp-status")).to_contain_text(re.compile(r"proposals: slow tiles [2-9]\d/100 · about"))
            save(slow, args.out / "demo-running-1400.png")
            slow.close()
            # the legend, the corrections and the table under the result
            page.locator("#ovp-legend").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(page, args.out / "demo-legend-table-1400.png")
            # 390x844: the top of the page and the result with its table
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.goto(url)
            t.upload(phone)
            t.segment(phone, "car, street lamp", "sky, road")
            expect(phone.locator("#ovp-status")).to_contain_text("4 segments")
            phone.evaluate("window.scrollTo(0, 0)")
            save(phone, args.out / "demo-phone-top-390.png")
            phone.locator("#ovp-run").scroll_into_view_if_needed()
            phone.evaluate("() => document.querySelector('#ovp-run').scrollIntoView({block: 'start'})")
            save(phone, args.out / "demo-phone-result-390.png")
            phone.locator("#ovp-table").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(phone, args.out / "demo-phone-table-390.png")
            browser.close()
    finally:
        for d in (demo, slow_demo):
            d.close()
            d.ovpanoptic_app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
