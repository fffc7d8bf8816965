"""A synthetic clip with video panoptic ground truth, for the video tests.

12 frames of 64 x 48 px. Stuff: ``wall`` (rows 0-23) and ``floor`` (rows 24-47). Things, each with
one ground-truth id in every frame:

* A (``box``, id 11): 10 x 10 at y 30, x = 2 + 3 t: moves right and passes in front of D.
* B (``box``, id 12): 8 x 8 at y 4, x = 56 + 2 t: leaves through the right edge (gone from frame 4).
* C (``ball``, id 13): 8 x 8 at (40, 4), enters at frame 4 and stays.
* D (``ball``, id 14): 12 x 12 at (30, 28), static, partly hidden by A from frame 7.

The ground truth is written like ``segment-video`` output: COCO-panoptic JSON whose images carry
``video_id`` and ``frame_index``, and one RGB-id PNG per frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ovpanoptic.evaluation import id_to_rgb

H, W, FRAMES = 48, 64, 12
CATEGORIES = [
    {"id": 1, "name": "box", "isthing": 1},
    {"id": 2, "name": "ball", "isthing": 1},
    {"id": 3, "name": "wall", "isthing": 0},
    {"id": 4, "name": "floor", "isthing": 0},
]
WALL, FLOOR, A, B, C, D = 1, 2, 11, 12, 13, 14
CATEGORY = {WALL: 3, FLOOR: 4, A: 1, B: 1, C: 2, D: 2}
COLOR = {WALL: (200, 190, 170), FLOOR: (90, 80, 70), A: (220, 40, 40), B: (240, 200, 30), C: (40, 90, 230), D: (30, 180, 80)}
CLASSES = "box, ball, wall, floor"
STUFF = "wall, floor"


def _grow(array: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def ground_truth(t: int, scale: int = 1) -> np.ndarray:
    """The ``(H * scale, W * scale)`` id map of frame ``t``."""
    ids = np.full((H, W), WALL, np.int64)
    ids[24:, :] = FLOOR
    ids[28:40, 30:42] = D
    if t >= 4:
        ids[4:12, 40:48] = C
    x = 56 + 2 * t
    if x < W:
        ids[4:12, x : min(x + 8, W)] = B
    x = 2 + 3 * t
    ids[30:40, x : x + 10] = A
    return _grow(ids, scale)


def frame(t: int, scale: int = 1) -> np.ndarray:
    """The RGB frame ``t``: each region its colour, with a fixed per-pixel texture."""
    ids = ground_truth(t, scale)
    rgb = np.zeros((*ids.shape, 3), np.int16)
    for sid, color in COLOR.items():
        rgb[ids == sid] = color
    texture = np.random.default_rng(7).integers(-6, 7, (*ids.shape, 3))
    return np.clip(rgb + texture, 0, 255).astype(np.uint8)


def write_clip(root: Path, frames: int = FRAMES, scale: int = 1) -> dict[str, Path]:
    """Write ``frames/`` (PNG frames), ``gt/panoptic/`` and ``gt/panoptic.json`` under ``root``
    (frames ``scale`` times the base size)."""
    frames_dir, png_dir = root / "frames", root / "gt" / "panoptic"
    frames_dir.mkdir(parents=True)
    png_dir.mkdir(parents=True)
    images, annotations = [], []
    for t in range(frames):
        Image.fromarray(frame(t, scale)).save(frames_dir / f"frame_{t}.png")
        ids = ground_truth(t, scale)
        Image.fromarray(id_to_rgb(ids)).save(png_dir / f"{t:06d}.png")
        images.append({"id": t, "file_name": f"frame_{t}.png", "width": W * scale, "height": H * scale, "video_id": "clip", "frame_index": t})
        segments = []
        for sid in np.unique(ids).tolist():
            ys, xs = np.nonzero(ids == sid)
            segments.append(
                {
                    "id": sid, "category_id": CATEGORY[sid], "iscrowd": 0, "area": len(ys),
                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                }
            )
        annotations.append({"image_id": t, "file_name": f"{t:06d}.png", "segments_info": segments})
    gt_json = root / "gt" / "panoptic.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return {"frames": frames_dir, "gt_json": gt_json, "gt_dir": png_dir}


def write_scene(root: Path, frames: int, objects, categories: list[dict], video_id: str = "scene") -> dict[str, Path]:
    """Write a clip of ``frames`` 64 x 48 frames: a floor (stuff id 1, category 3) under square
    objects. ``objects(t)`` gives frame ``t``'s objects as ``(gt id, category id, x, y, size,
    colour)`` (later ones in front; any part outside the frame is cut). Frames carry the same fixed
    texture as :func:`frame`. Returns the paths like :func:`write_clip`."""
    frames_dir, png_dir = root / "frames", root / "gt" / "panoptic"
    frames_dir.mkdir(parents=True)
    png_dir.mkdir(parents=True)
    texture = np.random.default_rng(7).integers(-6, 7, (H, W, 3))
    images, annotations = [], []
    for t in range(frames):
        ids = np.ones((H, W), np.int64)
        rgb = np.zeros((H, W, 3), np.int16)
        rgb[:] = (90, 80, 70)
        category = {1: 3}
        for gid, cid, x, y, size, colour in objects(t):
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, W), min(y + size, H)
            if x0 >= x1 or y0 >= y1:
                continue
            ids[y0:y1, x0:x1] = gid
            rgb[y0:y1, x0:x1] = colour
            category[gid] = cid
        Image.fromarray(np.clip(rgb + texture, 0, 255).astype(np.uint8)).save(frames_dir / f"frame_{t}.png")
        Image.fromarray(id_to_rgb(ids)).save(png_dir / f"{t:06d}.png")
        images.append({"id": t, "file_name": f"frame_{t}.png", "width": W, "height": H, "video_id": video_id, "frame_index": t})
        segments = []
        for sid in np.unique(ids).tolist():
            ys, xs = np.nonzero(ids == sid)
            segments.append(
                {
                    "id": sid, "category_id": category[sid], "iscrowd": 0, "area": len(ys),
                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                }
            )
        annotations.append({"image_id": t, "file_name": f"{t:06d}.png", "segments_info": segments})
    gt_json = root / "gt" / "panoptic.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return {"frames": frames_dir, "gt_json": gt_json, "gt_dir": png_dir}
