"""Oracle pipeline on real COCO ground truth -> exporters -> evaluator, and the exporters' formats."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.builtins.exporters import ExportError, OverlayExporter, OverlayConfig
from ovpanoptic.cli import main
from ovpanoptic.evaluation import evaluate_panoptic, rgb_to_id
from ovpanoptic.imageio import read_image
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import check_exporter


def oracle_config(sample: Path, tmp_path: Path, fuser: str) -> Path:
    gt = f'gt_json = "{sample / "panoptic.json"}"\ngt_dir = "{sample / "panoptic"}"\nimages_dir = "{sample / "images"}"\n'
    path = tmp_path / f"oracle-{fuser}.toml"
    path.write_text(
        "[pipeline]\nproposal_generator = \"oracle\"\nclassifier = \"oracle\"\n"
        f"fuser = \"{fuser}\"\nexporters = [\"coco-panoptic\", \"coco-instances\", \"summary\"]\n"
        "max_side = 0\ndevice = \"cpu\"\n"
        f"[proposal_generator.oracle]\n{gt}[classifier.oracle]\n{gt}"
        "[fuser.detectron2]\nstuff_area_thresh = 0\n"
    )
    return path


@pytest.fixture(scope="module")
def oracle_runs(tmp_path_factory):
    """Run the oracle pipeline once per fuser over the two COCO images."""
    from conftest import COCO_SAMPLE

    if not COCO_SAMPLE.is_dir():
        pytest.skip("COCO sample fixture not found")
    tmp = tmp_path_factory.mktemp("oracle")
    runs = {}
    for fuser in ("detectron2", "maskformer"):
        pipe = Pipeline(oracle_config(COCO_SAMPLE, tmp, fuser))
        vocab = pipe.vocabulary(name="coco")
        out = tmp / fuser
        results = {}
        for image_path in sorted((COCO_SAMPLE / "images").glob("*.jpg")):
            image = read_image(image_path)
            result = pipe.segment(image, vocab)
            pipe.export(result, image, out, image_path.stem)
            results[image_path.stem] = result
        runs[fuser] = (out, results)
    return runs


@pytest.mark.parametrize("fuser", ["detectron2", "maskformer"])
def test_oracle_pipeline_scores_pq_100(oracle_runs, coco_sample, fuser):
    out, results = oracle_runs[fuser]
    report = evaluate_panoptic(coco_sample / "panoptic.json", coco_sample / "panoptic", out / "panoptic.json", out / "panoptic")
    for group in (report.all, report.things, report.stuff):
        assert (group.pq, group.sq, group.rq) == (1.0, 1.0, 1.0)
    assert (report.things.n, report.stuff.n) == (4, 4)
    assert sum(len(r.segments) for r in results.values()) == 18 + 32


def test_png_ids_and_json_agree_exactly(oracle_runs, coco_sample):
    out, results = oracle_runs["detectron2"]
    data = json.loads((out / "panoptic.json").read_text())
    assert [(i["id"], i["file_name"]) for i in data["images"]] == [(142238, "000000142238.jpg"), (439180, "000000439180.jpg")]
    assert len(data["categories"]) == 133 and data["categories"][0] == {
        "id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60],
    }
    for ann in data["annotations"]:
        ids = rgb_to_id(np.asarray(Image.open(out / "panoptic" / ann["file_name"]).convert("RGB")))
        result = results[Path(ann["file_name"]).stem]
        np.testing.assert_array_equal(ids, result.panoptic_map)
        for seg in ann["segments_info"]:
            mask = ids == seg["id"]
            ys, xs = np.nonzero(mask)
            assert seg["area"] == int(mask.sum())
            assert seg["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            assert seg["iscrowd"] == 0


def test_files_load_with_detectron2_panoptic_loader(oracle_runs, coco_sample):
    from detectron2.data.datasets.coco_panoptic import load_coco_panoptic_json

    out, _ = oracle_runs["maskformer"]
    cats = json.loads((out / "panoptic.json").read_text())["categories"]
    things = [c["id"] for c in cats if c["isthing"]]
    stuff = [c["id"] for c in cats if not c["isthing"]]
    meta = {
        "thing_dataset_id_to_contiguous_id": {cid: i for i, cid in enumerate(things)},
        "stuff_dataset_id_to_contiguous_id": {cid: i for i, cid in enumerate(stuff)},
    }
    records = load_coco_panoptic_json(str(out / "panoptic.json"), str(coco_sample / "images"), str(out / "panoptic"), meta)
    assert [Path(r["file_name"]).name for r in records] == ["000000142238.jpg", "000000439180.jpg"]
    assert [len(r["segments_info"]) for r in records] == [18, 32]
    person = [s for s in records[0]["segments_info"] if s["category_id"] == 0]
    assert person and all(s["isthing"] for s in person)


def test_instances_load_with_pycocotools(oracle_runs):
    from pycocotools.coco import COCO

    out, results = oracle_runs["detectron2"]
    coco = COCO(str(out / "instances.json"))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[439180]))
    things = [s for s in results["000000439180"].segments if s.isthing]
    assert len(anns) == len(things)
    for ann, seg in zip(sorted(anns, key=lambda a: a["area"]), sorted(things, key=lambda s: s.area)):
        assert int(coco.annToMask(ann).sum()) == ann["area"] == seg.area
    assert {c["id"] for c in coco.loadCats(coco.getCatIds())} <= {c.id for c in results["000000439180"].vocabulary.things}


def test_instances_results_list_scores_ap_1_for_the_oracle_in_cocoeval(oracle_runs):
    """``instances_results.json`` is a COCO results list: ``COCO.loadRes`` takes it as it is
    written, and ``COCOeval`` scores the oracle's masks against the dataset file AP 1.0."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, results = oracle_runs["detectron2"]
    results_list = json.loads((out / "instances_results.json").read_text())
    assert isinstance(results_list, list) and len(results_list) == sum(len([s for s in r.segments if s.isthing]) for r in results.values())
    assert set(results_list[0]) == {"image_id", "category_id", "segmentation", "bbox", "score"}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(str(out / "instances.json"))
        dt = gt.loadRes(str(out / "instances_results.json"))
        for iou_type in ("segm", "bbox"):
            evaluation = COCOeval(gt, dt, iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            assert evaluation.stats[0] == pytest.approx(1.0), (iou_type, evaluation.stats)


def test_summary_json(oracle_runs):
    out, results = oracle_runs["detectron2"]
    data = json.loads((out / "000000142238.summary.json").read_text())
    assert data["image"] == "000000142238" and (data["height"], data["width"]) == (427, 640)
    assert len(data["segments"]) == 18 and {"proposals", "classify", "fuse", "total"} <= set(data["timings"])


def test_overlay_is_drawn_deterministically_by_detectron2(oracle_runs, coco_sample, tmp_path):
    _, results = oracle_runs["detectron2"]
    image = read_image(coco_sample / "images" / "000000439180.jpg")
    exporter = OverlayExporter(OverlayConfig())
    a = exporter.render(results["000000439180"], image)
    b = exporter.render(results["000000439180"], image)
    assert a.shape == image.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - image.astype(int)).mean() > 5  # segments are really painted
    check_exporter(exporter, results["000000439180"], image, tmp_path)


def test_exporting_another_vocabulary_into_the_same_folder_is_refused(oracle_runs, coco_sample, tmp_path):
    out, results = oracle_runs["detectron2"]
    pipe = Pipeline(oracle_config(coco_sample, tmp_path, "detectron2"))
    other = pipe.vocabulary("dog, cat")
    from ovpanoptic.types import PanopticResult

    empty = PanopticResult(np.zeros((4, 4), np.int32), (), other)
    before = (out / "panoptic.json").read_bytes()
    with pytest.raises(ExportError, match="holds results of another vocabulary .*Choose another output folder with -o"):
        pipe.export(empty, np.zeros((4, 4, 3), np.uint8), out, "x", ["coco-panoptic"])
    assert (out / "panoptic.json").read_bytes() == before
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_segment_and_eval_commands_end_to_end(coco_sample, tmp_path, capsys):
    out = tmp_path / "out"
    config = oracle_config(coco_sample, tmp_path, "maskformer")
    code = main(["segment", str(coco_sample / "images"), "--vocabulary", "coco", "--config", str(config), "-o", str(out), "--format", "coco-panoptic", "--no-progress"])
    assert code == 0
    capsys.readouterr()
    args = ["eval", "--gt-json", str(coco_sample / "panoptic.json"), "--gt-dir", str(coco_sample / "panoptic"),
            "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic")]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert [line.split("|")[1].split()[:3] for line in table.splitlines()[2:5]] == [["100.000"] * 3] * 3
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["all"]["pq"], report["things"]["n"], report["n_images"]) == (1.0, 4, 2)
    # A prediction folder missing one image: a clear error, exit code 2.
    data = json.loads((out / "panoptic.json").read_text())
    data["annotations"] = data["annotations"][:1]
    (out / "panoptic.json").write_text(json.dumps(data))
    assert main(args) == 2
    assert "000000439180" in capsys.readouterr().err


def test_overlay_labels_in_other_scripts_use_a_font_that_has_them_or_a_readable_stand_in(caplog):
    import warnings

    from ovpanoptic.builtins.fonts import LabelFonts
    from ovpanoptic.types import Category, PanopticResult, Vocabulary

    fonts = LabelFonts()
    assert fonts.covers_by_default("person café кот")  # DejaVu Sans: Latin, accents, Cyrillic
    assert fonts.family_for("ᴕ") == "DejaVu Serif"  # not in DejaVu Sans, found in another installed font
    exporter = OverlayExporter(OverlayConfig())
    cjk = "人" if not fonts.can_draw("人") else "\U0010fffd"  # a name no installed font can draw
    vocab = Vocabulary((Category(1, cjk, True), Category(2, "café", True), Category(3, "ᴕ", False)))
    pm = np.zeros((40, 60), np.int32)
    pm[:, :20], pm[:, 20:40], pm[:, 40:] = 1, 2, 3
    result = PanopticResult.from_map(pm, {1: (1, 0.9), 2: (2, 0.8), 3: (3, 0.7)}, vocab)
    assert [exporter.label(c.name, c.id) for c in vocab] == ["class 1", "café", "ᴕ"]
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Glyph ... missing from font" would fail here
        for _ in range(2):
            exporter.render(result, np.full((40, 60, 3), 200, np.uint8))
    assert [r.getMessage() for r in caplog.records if "no installed font" in r.getMessage()] == [
        f"overlay: no installed font can draw the class name {cjk!r}; it is labelled 'class 1'. Install a font that has "
        "its characters (e.g. Debian's fonts-noto-cjk for Chinese, Japanese and Korean)"
    ]  # once per name, although two images were drawn (and label() was called before)
