"""Draw the demo's example images (street, tabletop, room) from code: nothing is downloaded.

    .venv/bin/python demo/examples/make_examples.py   # rewrites the three JPEGs beside this file

The scenes are simple shapes with gradients, shading and a little noise, so that the demo has
something recognisable to segment; they are the project's own work, released under CC0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT = 640, 480


def vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], height: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    colors = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return np.broadcast_to(colors, (height, width, 3)).copy()


def finish(canvas: Image.Image, seed: int) -> Image.Image:
    """Soften the edges a little and add sensor-like noise."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.8)), np.float32)
    arr += rng.normal(0.0, 4.0, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def street() -> Image.Image:
    sky = vertical_gradient((110, 160, 225), (200, 225, 245), HEIGHT, WIDTH)
    img = Image.fromarray(sky.astype(np.uint8))
    d = ImageDraw.Draw(img)
    # buildings
    for x0, w, h, color in [(0, 150, 250, (150, 110, 95)), (150, 120, 300, (180, 170, 160)), (440, 200, 230, (120, 120, 140))]:
        d.rectangle([x0, 300 - h, x0 + w, 300], fill=color)
        for wx in range(x0 + 12, x0 + w - 20, 32):
            for wy in range(300 - h + 15, 290, 40):
                d.rectangle([wx, wy, wx + 16, wy + 22], fill=(70, 90, 120))
    # sidewalk and road
    d.rectangle([0, 300, WIDTH, 330], fill=(175, 170, 160))
    road = vertical_gradient((85, 85, 90), (60, 60, 65), HEIGHT - 330, WIDTH).astype(np.uint8)
    img.paste(Image.fromarray(road), (0, 330))
    for x in range(20, WIDTH, 120):
        d.rectangle([x, 400, x + 60, 408], fill=(235, 235, 220))
    # tree
    d.rectangle([300, 200, 316, 310], fill=(95, 65, 40))
    d.ellipse([250, 120, 366, 230], fill=(60, 130, 60))
    d.ellipse([275, 95, 345, 170], fill=(75, 150, 70))
    # street lamp
    d.rectangle([400, 150, 406, 320], fill=(50, 50, 55))
    d.rectangle([385, 140, 425, 152], fill=(60, 60, 65))
    d.ellipse([392, 150, 418, 162], fill=(250, 240, 180))
    # car
    d.rounded_rectangle([90, 345, 290, 410], radius=18, fill=(200, 40, 40))
    d.polygon([(130, 345), (160, 305), (235, 305), (262, 345)], fill=(190, 35, 35))
    d.polygon([(142, 343), (166, 312), (196, 312), (196, 343)], fill=(160, 200, 230))
    d.polygon([(203, 343), (203, 312), (232, 312), (252, 343)], fill=(160, 200, 230))
    for cx in (135, 245):
        d.ellipse([cx - 22, 390, cx + 22, 434], fill=(25, 25, 25))
        d.ellipse([cx - 10, 402, cx + 10, 422], fill=(150, 150, 150))
    return finish(img, 1)


def tabletop() -> Image.Image:
    wall = vertical_gradient((225, 215, 195), (200, 190, 170), HEIGHT, WIDTH)
    img = Image.fromarray(wall.astype(np.uint8))
    d = ImageDraw.Draw(img)
    table = vertical_gradient((150, 100, 60), (115, 75, 45), HEIGHT - 200, WIDTH).astype(np.uint8)
    img.paste(Image.fromarray(table), (0, 200))
    for y in range(215, HEIGHT, 26):  # wood grain
        d.line([(0, y), (WIDTH, y + 6)], fill=(125, 85, 50), width=2)
    # plate with an apple
    d.ellipse([60, 280, 260, 380], fill=(240, 240, 238))
    d.ellipse([85, 292, 235, 368], fill=(228, 228, 225))
    d.ellipse([125, 270, 195, 335], fill=(200, 30, 35))
    d.line([(160, 272), (166, 255)], fill=(80, 50, 20), width=4)
    d.ellipse([164, 252, 186, 264], fill=(70, 140, 50))
    # mug
    d.rectangle([330, 230, 410, 330], fill=(40, 90, 170))
    d.ellipse([330, 220, 410, 242], fill=(30, 70, 140))
    d.ellipse([330, 318, 410, 342], fill=(40, 90, 170))
    d.arc([395, 255, 440, 305], start=-90, end=90, fill=(40, 90, 170), width=9)
    # second apple
    d.ellipse([455, 300, 515, 360], fill=(120, 180, 40))
    # book
    d.polygon([(470, 380), (620, 360), (635, 430), (485, 455)], fill=(30, 110, 80))
    d.polygon([(485, 455), (635, 430), (635, 438), (487, 463)], fill=(235, 230, 215))
    return finish(img, 2)


def room() -> Image.Image:
    wall = vertical_gradient((205, 215, 225), (180, 190, 205), HEIGHT, WIDTH)
    img = Image.fromarray(wall.astype(np.uint8))
    d = ImageDraw.Draw(img)
    floor = vertical_gradient((165, 125, 90), (130, 95, 65), HEIGHT - 320, WIDTH).astype(np.uint8)
    img.paste(Image.fromarray(floor), (0, 320))
    for x in range(-200, WIDTH, 70):  # floorboards in perspective
        d.line([(x + 200, 320), (x * 1.6 + 120, HEIGHT)], fill=(115, 85, 60), width=2)
    # window
    d.rectangle([380, 60, 560, 230], fill=(245, 245, 245))
    d.rectangle([390, 70, 550, 220], fill=(150, 200, 240))
    d.rectangle([466, 70, 474, 220], fill=(245, 245, 245))
    d.rectangle([390, 141, 550, 149], fill=(245, 245, 245))
    # rug
    d.ellipse([170, 370, 520, 460], fill=(160, 50, 70))
    d.ellipse([200, 380, 490, 450], fill=(185, 75, 90))
    # chair
    d.rectangle([110, 180, 125, 400], fill=(90, 60, 35))
    d.rectangle([110, 180, 200, 195], fill=(90, 60, 35))
    d.rectangle([110, 290, 215, 310], fill=(110, 75, 45))
    d.rectangle([200, 305, 213, 400], fill=(90, 60, 35))
    d.rectangle([130, 305, 143, 385], fill=(80, 55, 30))
    # lamp
    d.rectangle([585, 150, 591, 360], fill=(40, 40, 40))
    d.ellipse([560, 352, 616, 368], fill=(40, 40, 40))
    d.polygon([(560, 150), (616, 150), (603, 105), (573, 105)], fill=(245, 225, 160))
    return finish(img, 3)


def main() -> None:
    for name, draw in [("street.jpg", street), ("tabletop.jpg", tabletop), ("room.jpg", room)]:
        draw().save(HERE / name, quality=88, optimize=True)
        print(HERE / name)


if __name__ == "__main__":
    main()
