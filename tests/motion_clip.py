"""A camera-motion clip with video panoptic ground truth (the flow tracker's test and benchmark).

The COCO fixture photo ``000000142238`` (14 people, a ball; tree, sky, grass) seen by a camera that
pans and zooms: frame ``t`` is the photo scaled by ``1.5 * (1 + 0.2 t / (T - 1))`` around a centre
moving from (250, 200) to (390, 230) in photo pixels, cut to 640 x 360 (bilinear; the ground truth
through the same transform, nearest). Over it, ``pasted`` textured ellipses (80 x 56 px, each
filled with its own patch of the other fixture photo, ``000000439180``) move across the frame and
across each other (a higher index is in front). Every object keeps one ground-truth id in every
frame: the photo's own segment ids (they move with the camera) and ``PASTED_BASE + i``.

The ground truth is written like ``segment-video`` output (COCO-panoptic JSON whose images carry
``video_id`` and ``frame_index``, one RGB-id PNG per frame), with the frames as PNGs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ovpanoptic.evaluation import id_to_rgb, rgb_to_id

SAMPLE = Path(os.environ.get("OVPANOPTIC_BENCH_SAMPLE", "/work/shared/fixtures/coco_panoptic_sample"))
PHOTO, TEXTURES = "000000142238", "000000439180"
SIZE = (640, 360)  # width, height
PASTED_BASE = 1000
#: Classes of the pasted objects, in turn.
PASTED_CLASSES = ("car", "dog", "horse", "truck", "cat", "bicycle")
RX, RY = 40, 28


def available() -> bool:
    """Whether the COCO fixture is here."""
    return (SAMPLE / "images" / f"{PHOTO}.jpg").is_file() and (SAMPLE / "images" / f"{TEXTURES}.jpg").is_file()


def _motions(pasted: int) -> list[tuple[float, float, float, float]]:
    """``(x0, y0, vx, vy)`` of each pasted object (frame pixels, per frame): the first four cross
    each other's paths; more come from a fixed random draw."""
    fixed = [(90.0, 150.0, 7.0, 0.5), (560.0, 175.0, -7.0, -0.5), (330.0, 50.0, 0.5, 4.5), (180.0, 300.0, 4.0, -3.0)]
    rng = np.random.default_rng(11)
    out = fixed[:pasted]
    while len(out) < pasted:
        x0, y0 = rng.uniform(60, 580), rng.uniform(40, 320)
        vx, vy = rng.uniform(-6, 6), rng.uniform(-3, 3)
        out.append((float(x0), float(y0), float(vx), float(vy)))
    return out


def _photo() -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, bool]], list[dict]]:
    gt = json.loads((SAMPLE / "panoptic.json").read_text())
    names = {c["id"]: (c["name"], bool(c["isthing"])) for c in gt["categories"]}
    ann = next(a for a in gt["annotations"] if a["file_name"].startswith(PHOTO))
    image = np.asarray(Image.open(SAMPLE / "images" / f"{PHOTO}.jpg").convert("RGB"))
    ids = rgb_to_id(np.asarray(Image.open(SAMPLE / "panoptic" / ann["file_name"]).convert("RGB"))).astype(np.int64)
    return image, ids, names, gt["categories"]


def render(frames: int = 60, pasted: int = 4, photo_things: bool = True):
    """Yield ``(rgb (360, 640, 3) uint8, ids (360, 640) int64, {id: category name})`` per frame.

    :param photo_things: keep the photo's own things in the ground truth (else their pixels are
        void there: a clip whose objects are exactly the ``pasted`` ones).
    """
    import cv2

    image, ids, names, categories = _photo()
    by_name = {c["name"]: c["id"] for c in categories}
    segs = json.loads((SAMPLE / "panoptic.json").read_text())
    ann = next(a for a in segs["annotations"] if a["file_name"].startswith(PHOTO))
    label = {s["id"]: names[s["category_id"]][0] for s in ann["segments_info"]}
    if not photo_things:
        for s in ann["segments_info"]:
            if names[s["category_id"]][1]:
                ids[ids == s["id"]] = 0
                label.pop(s["id"])
    texture = np.asarray(Image.open(SAMPLE / "images" / f"{TEXTURES}.jpg").convert("RGB"))
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    motions = _motions(pasted)
    for t in range(frames):
        f = t / max(frames - 1, 1)
        scale = 1.5 * (1.0 + 0.2 * f)
        cx, cy = 250 + 140 * f, 200 + 30 * f
        m = np.float32([[scale, 0, w / 2 - scale * cx], [0, scale, h / 2 - scale * cy]])
        rgb = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        gt = cv2.warpAffine(ids.astype(np.float32), m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        gt = gt.astype(np.int64)
        labels = {int(i): label[int(i)] for i in np.unique(gt) if int(i) in label}
        for i, (x0, y0, vx, vy) in enumerate(motions):
            x, y = x0 + vx * t, y0 + vy * t
            inside = ((xx - x) / RX) ** 2 + ((yy - y) / RY) ** 2 <= 1.0
            if not inside.any():
                continue
            px, py = (40 + 97 * i) % (texture.shape[1] - 2 * RX), (30 + 53 * i) % (texture.shape[0] - 2 * RY)
            patch = texture[py : py + 2 * RY + 1, px : px + 2 * RX + 1]
            ys, xs = np.nonzero(inside)
            rgb[ys, xs] = patch[np.clip(ys - int(round(y)) + RY, 0, 2 * RY), np.clip(xs - int(round(x)) + RX, 0, 2 * RX)]
            gt[inside] = PASTED_BASE + i
            labels[PASTED_BASE + i] = PASTED_CLASSES[i % len(PASTED_CLASSES)]
        yield rgb, gt, {k: v for k, v in labels.items() if (gt == k).any()}


def categories() -> list[dict]:
    """The fixture's COCO-panoptic categories (the pasted classes are among them)."""
    return _photo()[3]


def write_motion_clip(root: Path, frames: int = 60, pasted: int = 4, photo_things: bool = True) -> dict[str, Path | str]:
    """Write ``frames/``, ``gt/panoptic/`` and ``gt/panoptic.json`` under ``root``; return their
    paths and the clip's ``classes`` and ``stuff`` (comma-separated names)."""
    # Category ids 1..C in the order of the returned class list (a vocabulary built from that list
    # has the same ids, which the oracle classifier needs).
    names = [c["name"] for c in categories()]
    cats = [{**c, "id": i} for i, c in enumerate(sorted(categories(), key=lambda c: (not c["isthing"], names.index(c["name"]))), start=1)]
    by_name = {c["name"]: c for c in cats}
    frames_dir, png_dir = root / "frames", root / "gt" / "panoptic"
    frames_dir.mkdir(parents=True)
    png_dir.mkdir(parents=True)
    images, annotations, seen = [], [], set()
    for t, (rgb, ids, labels) in enumerate(render(frames, pasted, photo_things)):
        Image.fromarray(rgb).save(frames_dir / f"{t:04d}.png", compress_level=1)
        Image.fromarray(id_to_rgb(ids)).save(png_dir / f"{t:06d}.png")
        images.append({"id": t, "file_name": f"{t:04d}.png", "width": SIZE[0], "height": SIZE[1], "video_id": "motion", "frame_index": t})
        segments = []
        for sid, name in sorted(labels.items()):
            ys, xs = np.nonzero(ids == sid)
            seen.add(name)
            segments.append(
                {
                    "id": sid, "category_id": by_name[name]["id"], "iscrowd": 0, "area": len(ys),
                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                }
            )
        annotations.append({"image_id": t, "file_name": f"{t:06d}.png", "segments_info": segments})
    used = [c for c in cats if c["name"] in seen]
    renumber = {c["id"]: i for i, c in enumerate(used, start=1)}
    for ann in annotations:
        for seg in ann["segments_info"]:
            seg["category_id"] = renumber[seg["category_id"]]
    used = [{**c, "id": renumber[c["id"]]} for c in used]
    gt_json = root / "gt" / "panoptic.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": annotations, "categories": used}))
    return {
        "frames": frames_dir, "gt_json": gt_json, "gt_dir": png_dir,
        "classes": ", ".join(c["name"] for c in used), "stuff": ", ".join(c["name"] for c in used if not c["isthing"]),
    }
