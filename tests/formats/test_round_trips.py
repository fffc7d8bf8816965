"""One round trip per file format: a synthetic result written through the *registered* exporter, read
back by ovpanoptic's reader and by the tool's own library, compared segment by segment (class, pixels).

==========================  ==============================  ==========================================
exporter                    ovpanoptic reader               tool library
==========================  ==============================  ==========================================
``coco-panoptic``           ``read_coco_panoptic``          the JSON + Pillow, panopticapi's id rule
``coco-instances``          ``read_coco_instances``         pycocotools ``COCO.annToMask``
``label-studio``            ``read_label_studio``           label-studio-sdk ``brush.decode_rle``
``cvat``                    ``read_cvat``                   Datumaro ``Dataset.import_from(.., "cvat")``
``cityscapes``              ``read_cityscapes``             cityscapesscripts ``labels.id2label``
``cityscapes-panoptic``     ``read_cityscapes_panoptic``    cityscapesscripts ``convert2panoptic`` JSON + Pillow
==========================  ==============================  ==========================================

The training formats (COCO of ``package``, YOLO, semantic PNGs, Hugging Face Parquet) round-trip in
``tests/test_package.py``; the exports of the oracle pipeline on the COCO sample score PQ 100 against
its ground truth in ``tests/formats/test_labelling_eval.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from ovpanoptic.formats.annotations import PanopticAnnotations
from ovpanoptic.formats.cityscapes import read_cityscapes, read_cityscapes_panoptic
from ovpanoptic.formats.coco_instances import read_coco_instances
from ovpanoptic.formats.coco_panoptic import read_coco_panoptic
from ovpanoptic.formats.common import CategoryInfo
from ovpanoptic.formats.cvat import read_cvat
from ovpanoptic.formats.label_studio import read_label_studio
from ovpanoptic.testing import registry_with
from ovpanoptic.types import Category, PanopticResult, Vocabulary

#: Classes whose names are Cityscapes labels too (so every exporter takes them as they are).
VOCAB = Vocabulary((Category(1, "person", True), Category(2, "car", True), Category(3, "road", False), Category(4, "sky", False)))
CATEGORIES = [CategoryInfo(c.id, c.name, c.isthing) for c in VOCAB.categories]
STEM = "000007"

#: One segment as compared: (class name, its pixels as flat indices).
Segment = tuple[str, tuple[int, ...]]


def synthetic() -> PanopticResult:
    """24 x 32: sky above, road below, two persons (one touching the other), a car with a hole of road, a void strip."""
    ids = np.zeros((24, 32), np.int32)
    ids[:10, :] = 6  # sky
    ids[10:, :] = 5  # road
    ids[:, 31] = 0  # void
    ids[4:14, 3:7] = 1
    ids[6:16, 7:9] = 2  # touches person 1
    ids[14:21, 14:28] = 3
    ids[16:18, 18:22] = 5  # a hole of road in the car
    ids[2:4, 25:28] = 4  # a car in the sky
    segments = {1: (1, 0.91), 2: (1, 0.5), 3: (2, 0.777), 4: (2, 0.25), 5: (3, 0.6), 6: (4, 0.8)}
    return PanopticResult.from_map(ids, segments, VOCAB)


def truth(result: PanopticResult, things_only: bool = False) -> list[Segment]:
    names = {c.id: c.name for c in VOCAB.categories}
    return sorted(
        (names[s.category_id], tuple(np.flatnonzero(result.panoptic_map == s.id).tolist()))
        for s in result.segments
        if s.isthing or not things_only
    )


def export(name: str, out: Path, **options: object) -> PanopticResult:
    """Write :func:`synthetic` with the exporter registered as ``name`` (built as the pipeline builds it)."""
    spec = registry_with().component("exporter", name)
    exporter = spec.factory(spec.config_class(**options), None)
    result = synthetic()
    exporter.export(result, np.zeros((*result.image_size, 3), np.uint8), out, STEM)
    if hasattr(exporter, "finish"):
        exporter.finish(out, [STEM])
    return result


def segments_of(ids: npt.NDArray[np.integer], pairs: Iterable[tuple[int, str]]) -> list[Segment]:
    """``(segment id, class name)`` pairs of an id map as compared segments."""
    return sorted((name, tuple(np.flatnonzero(ids == sid).tolist())) for sid, name in pairs)


def read_back(annotations: PanopticAnnotations, names: Mapping[int, str] | None = None) -> list[Segment]:
    """The one image of a set read by ovpanoptic's reader; areas must be the pixel counts."""
    (name,) = annotations.names
    image = annotations.read(name)
    assert name == STEM and annotations.size(name) == (32, 24)
    table = names or {cid: c.name for cid, c in annotations.categories.items()}
    for s in image.segments:
        assert s["area"] == int((image.panoptic_map == s["id"]).sum())
    return segments_of(image.panoptic_map, ((s["id"], table[s["category_id"]]) for s in image.segments))


def panopticapi_ids(png: Path) -> npt.NDArray[np.int64]:
    """panopticapi's ``rgb2id``: ``R + 256 G + 256^2 B`` of the PNG as Pillow reads it."""
    rgb = np.asarray(Image.open(png).convert("RGB"), np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def test_coco_panoptic_round_trip(tmp_path: Path) -> None:
    result = export("coco-panoptic", tmp_path)
    assert read_back(read_coco_panoptic(tmp_path / "panoptic.json")) == truth(result)
    data = json.loads((tmp_path / "panoptic.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert {c["id"]: bool(c["isthing"]) for c in data["categories"]} == {c.id: c.isthing for c in VOCAB.categories}
    (annotation,) = data["annotations"]
    (image,) = data["images"]
    assert (image["id"], image["file_name"], image["width"], image["height"]) == (7, f"{STEM}.jpg", 32, 24)
    ids = panopticapi_ids(tmp_path / "panoptic" / annotation["file_name"])
    info = annotation["segments_info"]
    assert [s["area"] for s in info] == [int((ids == s["id"]).sum()) for s in info]
    assert segments_of(ids, ((s["id"], names[s["category_id"]]) for s in info)) == truth(result)


def test_coco_instances_round_trip(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    result = export("coco-instances", tmp_path)
    assert read_back(read_coco_instances(tmp_path / "instances.json")) == truth(result, things_only=True)
    coco = COCO(str(tmp_path / "instances.json"))
    (image_id,) = coco.getImgIds()
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(names.values()) == ["car", "person"]
    assert [a["area"] for a in annotations] == [int(coco.annToMask(a).sum()) for a in annotations]
    masks = sorted((names[a["category_id"]], tuple(np.flatnonzero(coco.annToMask(a)).tolist())) for a in annotations)
    assert masks == truth(result, things_only=True)


def test_label_studio_round_trip(tmp_path: Path) -> None:
    from label_studio_sdk.converter.brush import decode_rle

    result = export("label-studio", tmp_path)
    read = read_label_studio(tmp_path / "label-studio.json", CATEGORIES, use="predictions")
    assert read.used == {"annotations": 0, "predictions": 1, "none": 0} and read_back(read.annotations) == truth(result)
    (task,) = json.loads((tmp_path / "label-studio.json").read_text())
    masks = []
    for region in task["predictions"][0]["result"]:
        h, w = region["original_height"], region["original_width"]
        alpha = np.asarray(decode_rle(region["value"]["rle"])).reshape(h, w, 4)[..., 3]
        masks.append((region["value"]["brushlabels"][0], tuple(np.flatnonzero(alpha > 127).tolist())))
    assert sorted(masks) == truth(result)


def test_cvat_round_trip(tmp_path: Path) -> None:
    dm = pytest.importorskip("datumaro")
    result = export("cvat", tmp_path)
    assert read_back(read_cvat(tmp_path / "cvat", CATEGORIES)) == truth(result)
    dataset = dm.Dataset.import_from(str(tmp_path / "cvat"), "cvat")
    labels = dataset.categories()[dm.AnnotationType.label]
    (item,) = list(dataset)
    assert item.media.size == (24, 32)
    masks = [(labels[a.label].name, tuple(np.flatnonzero(np.asarray(a.image, bool)).tolist())) for a in item.annotations]
    assert sorted(masks) == truth(result)


def test_cityscapes_round_trip(tmp_path: Path) -> None:
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    result = export("cityscapes", tmp_path)
    assert read_back(read_cityscapes(tmp_path / "instanceIds")) == truth(result)
    below = Path("gtFine") / "val" / "ovpanoptic"
    values = np.asarray(Image.open(tmp_path / "instanceIds" / below / f"{STEM}_gtFine_instanceIds.png"), np.int64)
    label_ids = np.asarray(Image.open(tmp_path / "labelIds" / below / f"{STEM}_gtFine_labelIds.png"), np.int64)
    # Cityscapes' encoding (json2instanceImg.py): label id * 1000 + k for instances, the label id elsewhere.
    np.testing.assert_array_equal(np.where(values >= 1000, values // 1000, values), label_ids)
    present = [int(v) for v in np.unique(values) if v != 0]
    assert segments_of(values, ((v, labels.id2label[v // 1000 if v >= 1000 else v].name) for v in present)) == truth(result)


def test_cityscapes_panoptic_round_trip(tmp_path: Path) -> None:
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    result = export("cityscapes-panoptic", tmp_path)
    json_path = tmp_path / "cityscapes_panoptic_val.json"
    assert read_back(read_cityscapes_panoptic(json_path)) == truth(result)
    data = json.loads(json_path.read_text())  # as cityscapesscripts' convert2panoptic wrote it
    (annotation,) = data["annotations"]
    assert annotation["image_id"] == STEM and annotation["file_name"] == f"{STEM}_gtFine_panoptic.png"
    ids = panopticapi_ids(tmp_path / "cityscapes_panoptic_val" / annotation["file_name"])
    info = annotation["segments_info"]
    assert [s["area"] for s in info] == [int((ids == s["id"]).sum()) for s in info]
    assert segments_of(ids, ((s["id"], labels.id2label[s["category_id"]].name) for s in info)) == truth(result)
