"""``ovpanoptic package``: each training format read back by its own library (or its spec)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import small_coco

from ovpanoptic.cli import main
from ovpanoptic.evaluation import read_coco_panoptic
from ovpanoptic.packaging import make_splits
from ovpanoptic.formats.yolo import mask_polygons


@pytest.fixture
def packaged(coco_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "dataset"
    assert main(["package", str(coco_sample), "--images", str(coco_sample / "images"), "--splits", "50,50,0", "-o", str(out)]) == 0
    assert f"wrote {out}: train 1, val 1, test 0; original images found: 2 of 2" in capsys.readouterr().out
    return out


def test_coco_panoptic_and_instances_round_trip(packaged: Path, coco_sample: Path) -> None:
    from pycocotools.coco import COCO

    source = read_coco_panoptic(coco_sample / "panoptic.json")
    splits = json.loads((packaged / "splits.json").read_text())
    for split, names in splits.items():
        copy = read_coco_panoptic(packaged / "annotations" / f"panoptic_{split}.json")
        assert copy.names == tuple(names)
        for name in names:
            a, b = source.read(name), copy.read(name)
            assert np.array_equal(a.panoptic_map, b.panoptic_map)
        coco = COCO(str(packaged / "annotations" / f"instances_{split}.json"))
        for ann in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(ann["image_id"])[0]
            ids = copy.read(Path(image["file_name"]).stem).panoptic_map
            segment = next(s for s in copy.read(Path(image["file_name"]).stem).segments if s["area"] == ann["area"] and s["category_id"] == ann["category_id"])
            assert np.array_equal(coco.annToMask(ann).astype(bool), ids == segment["id"])


def test_datasets_loads_the_parquet_and_masks_round_trip(packaged: Path, coco_sample: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from ovpanoptic.evaluation import rgb_to_id

    loaded = datasets.load_dataset(str(packaged))  # through the card's configs
    assert sorted(loaded) == ["train", "val"] and loaded["train"].num_rows == 1 and loaded["val"].num_rows == 1
    source = read_coco_panoptic(coco_sample / "panoptic.json")
    index = {c["id"]: c["index"] for c in json.loads((packaged / "categories.json").read_text())["categories"]}
    for split in ("train", "val"):
        row = loaded[split][0]
        name = Path(row["file_name"]).stem
        truth = source.read(name)
        assert np.array_equal(rgb_to_id(np.asarray(row["panoptic"].convert("RGB"))), truth.panoptic_map)
        semantic = np.asarray(row["semantic"])
        expected = np.full(truth.panoptic_map.shape, 255)
        for s in truth.segments:
            expected[truth.panoptic_map == s["id"]] = index[s["category_id"]]
        assert np.array_equal(semantic, expected)
        assert row["image"].size == (truth.panoptic_map.shape[1], truth.panoptic_map.shape[0])
        assert sorted(s["id"] for s in row["segments_info"]) == sorted(s["id"] for s in truth.segments)


def test_yolo_labels_fill_back_to_the_masks_exactly(packaged: Path, coco_sample: Path) -> None:
    """By the YOLO-seg spec (Ultralytics is not installed here): each line is a class and normalised
    polygon; filled with OpenCV at the image size, the lines of a segment give its pixels back
    (holes aside, which the format cannot hold and the packager reports)."""
    import cv2
    from scipy.ndimage import binary_fill_holes

    names = json.loads((packaged / "id2label.json").read_text())
    data_yaml = (packaged / "data.yaml").read_text()
    assert "train: images/train" in data_yaml and f'  0: "{names["0"]}"' in data_yaml
    source = read_coco_panoptic(coco_sample / "panoptic.json")
    index = {c["id"]: c["index"] for c in json.loads((packaged / "categories.json").read_text())["categories"]}
    for split, members in json.loads((packaged / "splits.json").read_text()).items():
        for name in members:
            truth = source.read(name)
            height, width = truth.panoptic_map.shape
            painted: dict[int, np.ndarray] = {}
            for line in (packaged / "labels" / split / f"{name}.txt").read_text().splitlines():
                cls, *coords = line.split()
                points = np.round(np.array(coords, float).reshape(-1, 2) * [width, height]).astype(np.int32)
                canvas = painted.setdefault(int(cls), np.zeros((height, width), np.uint8))
                cv2.fillPoly(canvas, [points], 1)
            for cls in {index[s["category_id"]] for s in truth.segments if not s.get("iscrowd")}:
                expected = np.zeros((height, width), bool)  # each segment with its holes filled (scipy, not our code)
                for s in truth.segments:
                    if index[s["category_id"]] == cls and not s.get("iscrowd"):
                        expected |= binary_fill_holes(truth.panoptic_map == s["id"])
                assert np.array_equal(painted[cls].astype(bool), expected), (name, cls)


def test_polygon_of_a_hole_free_mask_is_exact() -> None:
    import cv2

    mask = np.zeros((12, 15), bool)
    mask[2:9, 3:7] = True
    mask[5, 7:12] = True  # a 1-pixel spur
    mask[10, 13] = True  # a single pixel
    polygons, holes = mask_polygons(mask)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(filled, polygons, 1)
    assert holes == 0 and np.array_equal(filled.astype(bool), mask)


def test_splits_are_deterministic_and_keep_every_class_where_possible() -> None:
    classes = {f"img{k:02d}": frozenset({"common"} | ({"rare"} if k in (3, 7, 11) else set()) | ({"single"} if k == 5 else set())) for k in range(20)}
    first = make_splits(classes, (0.8, 0.1, 0.1), seed=1)
    assert first == make_splits(classes, (0.8, 0.1, 0.1), seed=1)
    assert {s: len(n) for s, n in first.images.items()} == {"train": 16, "val": 2, "test": 2}
    for split in ("train", "val", "test"):
        assert any("rare" in classes[n] for n in first.images[split])
    assert sum(1 for s, m in first.missing.items() if "single" in m) == 2  # one image can be in one split only
    assert make_splits(classes, (0.8, 0.1, 0.1), seed=2).images != first.images


def test_card_is_filled_and_errors_leave_nothing(packaged: Path, coco_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = (packaged / "README.md").read_text()
    assert card.startswith("---\npretty_name: \"dataset\"\n")
    assert "| 19 | horse | thing | 1 / 12 | 0 / 0 | 31728 | ![horse](card/crops/17.png) |" in card  # seed 0: 439180 in train
    assert "- split val has no image of gravel, horse, truck (too few images hold them)" in card
    assert Image.open(packaged / "card" / "crops" / "17.png").size[0] > 0
    assert "How many masks humans changed: *not recorded*" in card
    assert main(["package", str(coco_sample), "-o", str(packaged)]) == 2
    assert f"{packaged} is not empty: choose a new folder with -o, or add --overwrite to replace it" in capsys.readouterr().err
    assert main(["package", str(coco_sample), "--splits", "80,30,10", "-o", str(tmp_path / "x")]) == 2
    assert "--splits takes three percentages TRAIN,VAL,TEST that sum to 100" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".x")] == []


def test_package_output_under_a_file_is_refused_before_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = small_coco(tmp_path / "src")
    (tmp_path / "notadir").write_text("x")
    assert main(["package", str(source), "--no-images", "-o", str(tmp_path / "notadir" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot create the output folder {tmp_path / 'notadir' / 'sub'}: {tmp_path / 'notadir'} is a file; "
                   "choose another output folder with -o\n")


def test_package_checks_every_original_image_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = small_coco(tmp_path / "src")
    images = tmp_path / "images"
    images.mkdir()
    out = tmp_path / "dataset"
    (images / "a.png").write_text("not an image")
    assert main(["package", str(source), "--images", str(images), "--splits", "100,0,0", "-o", str(out)]) == 2
    assert (f"error: original image {images / 'a.png'} is not an image file Pillow can read: replace it with the original image, "
            "or remove it from --images") in capsys.readouterr().err
    Image.new("RGB", (100, 100)).save(images / "a.png")
    assert main(["package", str(source), "--images", str(images), "--splits", "100,0,0", "-o", str(out)]) == 2
    assert (f"error: original image {images / 'a.png'} is 100x100 but its labels (a) are 24x20 (width x height, EXIF orientation "
            "applied): give the image the labels were made on (--images DIR)") in capsys.readouterr().err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset")]
    rotated = Image.new("RGB", (20, 24))  # stored portrait, EXIF 6: upright it is 24x20 like its labels
    exif = rotated.getexif()
    exif[0x0112] = 6
    (images / "a.png").unlink()
    rotated.save(images / "a.jpg", exif=exif)
    assert main(["package", str(source), "--images", str(images), "--splits", "100,0,0", "-o", str(out)]) == 0
    assert "original images found: 1 of 1" in capsys.readouterr().out


def test_package_missing_originals_are_refused_unless_no_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = small_coco(tmp_path / "src")
    out = tmp_path / "dataset"
    assert main(["package", str(source), "--splits", "100,0,0", "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: 1 of 1 original image(s) not found (no --images DIR given and no manifest input found): a. Give the folder of the "
        "original images with --images DIR, or add --no-images to package the labels only (no images/, no data.yaml)\n"
    )
    assert not out.exists()
    assert main(["package", str(source), "--images", str(tmp_path), "--no-images", "-o", str(out)]) == 2
    assert "--images and --no-images contradict each other" in capsys.readouterr().err
    assert main(["package", str(source), "--splits", "100,0,0", "--no-images", "-o", str(out)]) == 0
    assert "note: labels only (--no-images): no images/, no data.yaml" in capsys.readouterr().out
    assert (out / "labels" / "train" / "a.txt").is_file()
    assert not (out / "data.yaml").exists() and not (out / "images").exists()


def test_package_images_option_wins_over_the_manifest_and_cvat_ships_its_images(tmp_path: Path) -> None:
    from ovpanoptic.packaging.build import _cvat_images, _image_files

    given, recorded = tmp_path / "given", tmp_path / "recorded"
    given.mkdir()
    recorded.mkdir()
    (given / "a.png").write_bytes(b"")
    (recorded / "a.png").write_bytes(b"")
    assert _image_files(given, {"a": str(recorded / "a.png")}) == {"a": given / "a.png"}
    assert _image_files(None, {"a": str(recorded / "a.png")}) == {"a": recorded / "a.png"}
    cvat = tmp_path / "out1" / "cvat"
    (cvat / "images").mkdir(parents=True)
    (cvat / "annotations.xml").write_text("<annotations/>")
    assert _cvat_images(cvat) == cvat / "images" and _cvat_images(cvat / "annotations.xml") == cvat / "images"


def test_package_refine_names_its_option_and_refuses_a_name_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = small_coco(tmp_path / "src")
    out = tmp_path / "dataset"
    assert main(["package", str(source), "--no-images", "--refine", "nope", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refiner 'nope' is not provided by any installed, enabled plugin." in err and err.endswith("choose another with --refine NAME\n")
    assert main(["package", str(source), "--no-images", "--refine", "cleanup", "--refine", "cleanup", "-o", str(out)]) == 2
    assert capsys.readouterr().err == "error: --refine cleanup is given twice: name each refiner once (they run in the order given)\n"
    assert not out.exists()


def test_package_reports_a_broken_source_first_and_calls_it_the_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A truncated CVAT export without --classes: the broken file is said, not the missing classes.
    cvat = tmp_path / "cvat"
    cvat.mkdir()
    (cvat / "annotations.xml").write_text(
        "<annotations><version>1.1</version><meta><task><labels><label><name>box</name></label></labels></task></meta>\n"
        '<image id="0" name="a.jpg" width="4" height="3">', "utf-8",
    )
    out = tmp_path / "dataset"
    assert main(["package", str(cvat), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: source CVAT export {cvat / 'annotations.xml'} is not well-formed XML (line 2, column 49: no element found): "
        "the file is empty or cut off; export it again\n"
    )
    # A label PNG missing and no originals: the source's broken label is said first, as the source's.
    source = small_coco(tmp_path / "src")
    (source.parent / "panoptic" / "a.png").unlink()
    assert main(["package", str(source), "--splits", "100,0,0", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"error: a: source PNG {source.parent / 'panoptic' / 'a.png'} does not exist\n"
    assert not out.exists()
