"""``ovpanoptic evaluate``: zero-shot PQ of whole datasets (COCO, ADE20K and Cityscapes panoptic
layouts), with the protocol written beside the numbers, resumable, subsets, and the errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FAKE_OVERRIDES
from PIL import Image

from ovpanoptic.cli import main
from ovpanoptic.evaluation import id_to_rgb

SETS = [a for o in FAKE_OVERRIDES[:3] for a in ("--set", o)]


def oracle_sets(gt_json: Path, gt_dir: Path, images: Path) -> list[str]:
    out = ["--set", "pipeline.proposal_generator='oracle'", "--set", "pipeline.classifier='oracle'", "--set", "pipeline.max_side=0"]
    for kind in ("proposal_generator", "classifier"):
        for key, value in (("gt_json", gt_json), ("gt_dir", gt_dir), ("images_dir", images)):
            out += ["--set", f"{kind}.oracle.{key}='{value}'"]
    return out


def coco_oracle(sample: Path) -> list[str]:
    return oracle_sets(sample / "panoptic.json", sample / "panoptic", sample / "images")


def test_the_oracle_scores_pq_100_on_the_coco_sample_and_the_protocol_is_written(coco_sample, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(coco_sample), "--format", "coco-panoptic", "-o", str(out), "--no-progress", *coco_oracle(coco_sample)]) == 0
    said = capsys.readouterr().out
    assert "coco-panoptic: 2 of 2 image(s), 133 classes (auto)" in said
    assert "All              | 100.000  100.000  100.000      8" in said
    data = json.loads((out / "evaluation.json").read_text())
    results = data["results"]
    assert (results["all"]["pq"], results["things"]["pq"], results["stuff"]["pq"]) == (100.0, 100.0, 100.0)
    assert results["per_category"]["person"]["tp"] == 26 and results["per_category"]["horse"]["tp"] == 11
    protocol = data["protocol"]
    assert protocol["images"] == ["000000142238", "000000439180"]
    assert protocol["dataset"]["categories"] == 133 and protocol["dataset"]["things"] == 80
    categories = protocol["vocabulary"]["categories"]
    assert len(categories) == 133 and protocol["vocabulary"]["source"] == "auto"
    person = next(c for c in categories if c["id"] == 1)
    assert person["synonyms"] == ["people", "pedestrian", "human"]  # from the coco named vocabulary
    tree = next(c for c in categories if c["id"] == 184)
    assert (tree["name"], tree["isthing"], tree["synonyms"][:2]) == ("tree-merged", False, ["tree", "trees"])
    assert protocol["image_size"]["max_side"] == 0
    assert protocol["components"]["proposal_generator"] == {"oracle": {"plugin": "oracle", "distribution": "ovpanoptic", "version": protocol["ovpanoptic"]}}
    assert protocol["config"]["pipeline"]["classifier"] == "oracle"
    stages = data["timing"]["stages"]
    assert set(stages) >= {"proposals", "classify", "fuse", "total"} and stages["total"]["images"] == 2
    assert data["images"] == {"selected": 2, "evaluated": 2, "failed": [], "stopped": None, "review": []}
    assert data["timing"]["this_run"]["images_segmented"] == 2
    # predictions are in the dataset's own format: the standard evaluation reads them too
    assert main(["eval", "--gt", str(coco_sample / "panoptic.json"), "--pred", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["all"]["pq"] == 1.0


def test_a_second_run_resumes_and_still_times_every_image(coco_sample, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", str(coco_sample), "--format", "coco-panoptic", "-o", str(out), "--no-progress", *coco_oracle(coco_sample)]
    assert main([*argv, "--limit", "1"]) == 0
    first = json.loads((out / "evaluation.json").read_text())
    assert first["protocol"]["images"] == ["000000142238"] and first["protocol"]["selection"]["limit"] == 1
    assert first["results"]["all"]["n"] == 5  # the categories of the rugby image only
    assert main(argv) == 0
    second = json.loads((out / "evaluation.json").read_text())
    assert second["timing"]["this_run"]["skipped_done_before"] == 1 and second["timing"]["this_run"]["images_segmented"] == 1
    assert second["timing"]["stages"]["total"]["images"] == 2  # the earlier run's image is timed from the manifest
    assert second["results"]["all"]["pq"] == 100.0 and second["protocol"]["images"] == ["000000142238", "000000439180"]


# -- a synthetic dataset whose PQ is worked out by hand ---------------------------------------------

# Tiles of a 40x40 image in the fake pipeline's order (tiles: 2x2 grid; cycling: proposal i -> class i % 3;
# paint: earlier wins, stuff of a class is one segment): TL square, TR wall, BL bar, BR square.
TL, TR, BL, BR = (slice(0, 20), slice(0, 20)), (slice(0, 20), slice(20, 40)), (slice(20, 40), slice(0, 20)), (slice(20, 40), slice(20, 40))
CATEGORIES = [
    {"id": 1, "name": "square", "isthing": 1, "color": [200, 0, 0]},
    {"id": 2, "name": "wall", "isthing": 0, "color": [0, 200, 0]},
    {"id": 3, "name": "bar", "isthing": 1, "color": [0, 0, 200]},
]


def write_coco_dataset(root: Path, images: dict[str, tuple[np.ndarray, list[dict]]], categories=CATEGORIES, image_dir="images") -> Path:
    (root / "panoptic").mkdir(parents=True)
    (root / image_dir).mkdir(parents=True)
    entries, annotations = [], []
    for i, (name, (ids, segments)) in enumerate(images.items()):
        Image.fromarray(id_to_rgb(ids)).save(root / "panoptic" / f"{name}.png")
        Image.fromarray(np.full((*ids.shape, 3), 40 * i, np.uint8)).save(root / image_dir / f"{name}.png")
        entries.append({"id": i, "file_name": f"{name}.png", "height": ids.shape[0], "width": ids.shape[1]})
        annotations.append({"image_id": i, "file_name": f"{name}.png", "segments_info": segments})
    (root / "panoptic.json").write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}))
    return root


def seg(sid: int, cat: int, ids: np.ndarray) -> dict:
    return {"id": sid, "category_id": cat, "iscrowd": 0, "area": int((ids == sid).sum())}


def hand_dataset(root: Path) -> Path:
    a = np.zeros((40, 40), np.int32)
    a[TL] = 1            # square, exactly the TL tile: TP, IoU 1
    a[TR] = 2
    a[BR] = 2            # wall over TR + BR: the predicted wall is TR only, IoU 0.5 (not > 0.5): FP + FN
    a[20:40, 0:10] = 3   # bar over half of BL, the rest void: IoU 200 / (400 - 200 void) = 1: TP
    b = np.zeros((40, 40), np.int32)  # exactly the prediction: 2 squares, wall, bar: all TP
    b[TL], b[TR], b[BL], b[BR] = 1, 2, 3, 4
    return write_coco_dataset(root, {
        "a": (a, [seg(1, 1, a), seg(2, 2, a), seg(3, 3, a)]),
        "b": (b, [seg(1, 1, b), seg(2, 2, b), seg(3, 3, b), seg(4, 1, b)]),
    })


def test_a_deterministic_pipeline_scores_the_pq_worked_out_by_hand(tmp_path, with_plugins, monkeypatch, capsys):
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    data_dir = hand_dataset(tmp_path / "data")
    out = tmp_path / "eval"
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), "--no-progress", "--json", *SETS]) == 0
    data = json.loads(capsys.readouterr().out)
    per = data["results"]["per_category"]
    # square: TP 3 (a: TL; b: TL, BR), FP 1 (a: the BR square on wall) -> PQ = 3 / (3 + 0.5) = 85.714
    assert (per["square"]["tp"], per["square"]["fp"], per["square"]["fn"]) == (3, 1, 0) and per["square"]["pq"] == pytest.approx(300 / 3.5, abs=1e-3)
    # wall: a: FP 1 + FN 1 (IoU 0.5); b: TP 1 -> PQ = 1 / (1 + 1) = 50
    assert (per["wall"]["tp"], per["wall"]["fp"], per["wall"]["fn"]) == (1, 1, 1) and per["wall"]["pq"] == pytest.approx(50.0, abs=1e-3)
    # bar: TP 2, IoU 1 each (void is not counted against a prediction) -> PQ 100
    assert (per["bar"]["tp"], per["bar"]["fp"], per["bar"]["fn"]) == (2, 0, 0) and per["bar"]["pq"] == pytest.approx(100.0, abs=1e-3)
    results = data["results"]
    assert results["all"]["pq"] == pytest.approx((300 / 3.5 + 50 + 100) / 3, abs=1e-3)  # 78.571
    assert results["things"]["pq"] == pytest.approx((300 / 3.5 + 100) / 2, abs=1e-3)  # 92.857
    assert results["stuff"]["pq"] == pytest.approx(50.0, abs=1e-3)
    assert data["images"]["review"] == []  # image a's own PQ, (2/3 + 0 + 1) / 3 = 0.556, is above the default 50
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), "--no-progress", "--json", "--review-below", "60",
                 *SETS]) == 0
    review = json.loads(capsys.readouterr().out)["images"]["review"]
    assert [(i["image"], round(i["pq"], 4), i["tp"], i["fp"], i["fn"], i["changed"]) for i in review] == [("a", 0.5556, 2, 2, 1, ["square", "wall"])]


def test_ade20k_zero_based_ids_are_shifted_and_written_back_in_the_datasets_ids(tmp_path, with_plugins, monkeypatch, capsys):
    """ADE20K panoptic (Mask2Former's preparation) numbers its classes from 0, which ovpanoptic keeps
    for void: the vocabulary takes id + 1, the score is in the dataset's ids, and
    panoptic.dataset-ids.json carries the dataset's own ids."""
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    root = tmp_path / "ADEChallengeData2016"
    ids = np.zeros((40, 40), np.int32)
    ids[TL], ids[TR], ids[BL] = 1, 2, 3
    categories = [{"id": 0, "name": "wall", "isthing": 0}, {"id": 1, "name": "road, route", "isthing": 0},
                  {"id": 2, "name": "bed", "isthing": 1}]
    write_coco_dataset(root, {"ADE_val_00000001": (ids, [seg(1, 2, ids), seg(2, 0, ids), seg(3, 1, ids)])}, categories,
                       image_dir="images/validation")
    (root / "panoptic.json").rename(root / "ade20k_panoptic_val.json")
    (root / "panoptic").rename(root / "ade20k_panoptic_val")
    out = tmp_path / "eval"
    assert main(["evaluate", str(tmp_path), "--format", "ade20k-panoptic", "-o", str(out), "--no-progress", "--json", *SETS]) == 0
    data = json.loads(capsys.readouterr().out)
    vocab = data["protocol"]["vocabulary"]
    assert [(c["id"], c["name"], c["isthing"]) for c in vocab["categories"]] == [(1, "wall", False), (2, "road", False), (3, "bed", True)]
    assert "route" in vocab["categories"][1]["synonyms"] and vocab["id_map"] == {"1": 0, "2": 1, "3": 2}
    # prediction: TL bed (vocabulary id 3 -> cycling col 0 is wall...): cycling gives tile i class i % 3: TL wall,
    # TR road, BL bed, BR wall (one wall segment with TL). GT: TL bed, TR wall, BL road.
    per = data["results"]["per_category"]
    assert {(k, v["id"]) for k, v in per.items()} == {("wall", 0), ("road, route", 1), ("bed", 2)}  # scored in the dataset's ids
    assert all(per[k]["tp"] == 0 for k in per)
    written = json.loads((out / "panoptic.dataset-ids.json").read_text())
    assert [c["id"] for c in written["categories"]] == [0, 1, 2]
    assert sorted(s["category_id"] for s in written["annotations"][0]["segments_info"]) == [0, 1, 2]


def test_subsets_and_their_errors(coco_sample, tmp_path, capsys):
    base = ["evaluate", str(coco_sample), "--format", "coco-panoptic", "--no-progress", *coco_oracle(coco_sample)]
    out = tmp_path / "one"
    assert main([*base, "-o", str(out), "--images", "000000439180.jpg"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["protocol"]["images"] == ["000000439180"]
    listing = tmp_path / "list.txt"
    listing.write_text("# the rugby match\n000000142238\n")
    assert main([*base, "-o", str(tmp_path / "two"), "--images", f"@{listing}"]) == 0
    assert json.loads((tmp_path / "two" / "evaluation.json").read_text())["protocol"]["images"] == ["000000142238"]
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "bad"), "--images", "000000000001,000000142238"]) == 2
    assert "1 image(s) given with --images are not in panoptic.json (first: 000000000001)" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "bad"), "--limit", "0"]) == 2
    assert "--limit must be >= 1, got 0" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "bad"), "--images", f"@{tmp_path / 'nope.txt'}"]) == 2
    assert "--images @" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_datasets_that_are_not_there_say_what_was_looked_for(coco_sample, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope"), "--format", "coco-panoptic", "-o", str(tmp_path / "o")]) == 2
    assert "the dataset folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty"), "--format", "cityscapes-panoptic", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no cityscapes-panoptic ground truth found in" in err and "gtFine/cityscapes_panoptic_val.json" in err and "--annotations" in err
    copy = tmp_path / "copy"
    shutil.copytree(coco_sample, copy)
    (copy / "images" / "000000439180.jpg").unlink()
    assert main(["evaluate", str(copy), "--format", "coco-panoptic", "-o", str(tmp_path / "o")]) == 2
    assert "1 image file(s) of the ground truth are missing (first: " in capsys.readouterr().err
    assert main(["evaluate", str(copy), "--format", "coco-panoptic", "-o", str(tmp_path / "o"), "--limit", "1", "--vocabulary", "cityscapes",
                 *coco_oracle(coco_sample)]) == 0  # the first image is there; a named vocabulary matched by name
    data = json.loads((tmp_path / "o" / "evaluation.json").read_text())
    assert data["protocol"]["vocabulary"]["source"] == "cityscapes"
    assert any("dataset class(es) are not in vocabulary 'cityscapes'" in n for n in data["results"]["notes"])
    assert not (tmp_path / "o2").exists()


@pytest.mark.skipif(importlib.util.find_spec("cityscapesscripts") is None, reason="cityscapesscripts is not installed")
def test_cityscapes_panoptic_layout_with_the_oracle_scores_pq_100(tmp_path, capsys):
    root = tmp_path / "cityscapes"
    name = "frankfurt_000000_000001"
    ids = np.zeros((32, 64), np.int32)
    ids[16:, :] = 7000            # road (stuff)
    ids[4:14, 4:20] = 26000       # car 0
    ids[4:14, 30:50] = 26001      # car 1
    ids[0:4, :] = 0
    segments = [{"id": 7000, "category_id": 7, "iscrowd": 0, "area": int((ids == 7000).sum())},
                {"id": 26000, "category_id": 26, "iscrowd": 0, "area": int((ids == 26000).sum())},
                {"id": 26001, "category_id": 26, "iscrowd": 0, "area": int((ids == 26001).sum())}]
    gt_dir = root / "gtFine" / "cityscapes_panoptic_val"
    gt_dir.mkdir(parents=True)
    Image.fromarray(id_to_rgb(ids)).save(gt_dir / f"{name}_gtFine_panoptic.png")
    images = root / "leftImg8bit" / "val" / "frankfurt"
    images.mkdir(parents=True)
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[ids == 7000], rgb[ids == 26000], rgb[ids == 26001] = (128, 64, 128), (0, 0, 142), (0, 0, 160)
    Image.fromarray(rgb).save(images / f"{name}_leftImg8bit.png")
    gt = {"images": [{"id": name, "file_name": f"{name}_gtFine_leftImg8bit.png", "height": 32, "width": 64}],  # cityscapesscripts' naming
          "annotations": [{"image_id": name, "file_name": f"{name}_gtFine_panoptic.png", "segments_info": segments}],
          "categories": [{"id": 7, "name": "road", "isthing": 0, "color": [128, 64, 128]}, {"id": 26, "name": "car", "isthing": 1, "color": [0, 0, 142]}]}
    (root / "gtFine" / "cityscapes_panoptic_val.json").write_text(json.dumps(gt))
    oracle_json = tmp_path / "oracle.json"  # the oracle finds the image by the JSON's file name
    oracle_json.write_text(json.dumps({**gt, "images": [{**gt["images"][0], "file_name": f"{name}_leftImg8bit.png"}]}))
    out = tmp_path / "eval"
    argv = ["evaluate", str(root), "--format", "cityscapes-panoptic", "-o", str(out), "--no-progress", "--json",
            *oracle_sets(oracle_json, gt_dir, images), "--set", "pipeline.fuser='maskformer'"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"]["all"]["pq"] == 100.0 and data["results"]["per_category"]["car"]["tp"] == 2
    assert (out / "cityscapes_panoptic_val.json").is_file() and (out / "cityscapes_panoptic_val" / f"{name}_gtFine_panoptic.png").is_file()


def test_the_evaluation_protocol_names_the_clip_prompt_templates(coco_sample, tmp_path, capsys):
    """The default preset's classifier (CLIP) names a template set: the protocol holds its texts."""
    from ovpanoptic.engines.dataset import _templates
    from ovpanoptic.pipeline import Pipeline

    pipe = Pipeline("default", device="cpu")
    found = _templates(pipe)
    assert found["name"] == pipe.component_config("classifier").templates == "short"
    assert found["templates"] == list(pipe.registry.prompt_templates["short"][0]) and len(found["templates"]) == 7
    imagenet = _templates(Pipeline("default", device="cpu", overrides=["classifier.clip.templates='imagenet-80'"]))
    assert len(imagenet["templates"]) == 80 and "a photo of a {}." in imagenet["templates"]


def _digest_tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_output_folder_over_the_ground_truth_is_refused_before_writing(tmp_path, with_plugins, monkeypatch, capsys):
    """Found by a tester: -o on the dataset folder (images elsewhere) replaced the ground truth with
    the predictions, which then scored PQ 100 against themselves."""
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    data_dir = hand_dataset(tmp_path / "data")
    shutil.move(data_dir / "images", tmp_path / "elsewhere")
    before = _digest_tree(data_dir)
    for out in (data_dir, data_dir / "panoptic", data_dir / "panoptic" / "deeper", tmp_path):
        argv = ["evaluate", str(data_dir), "--format", "coco-panoptic", "--image-dir", str(tmp_path / "elsewhere"), "-o", str(out), *SETS]
        assert main(argv) == 2
        assert "overlaps the dataset's ground truth" in capsys.readouterr().err
    assert _digest_tree(data_dir) == before
    assert not (data_dir / "panoptic" / "deeper").exists()


@pytest.mark.parametrize(
    ("categories", "message"),
    [
        ([{"id": 1, "name": "square"}, {"id": 2, "name": "wall", "isthing": 0}], "must be a dict with 'id', 'name' and 'isthing'"),
        ([{"id": 1, "name": "", "isthing": 1}, {"id": 2, "name": "wall", "isthing": 0}], "categories[0] has no name"),
        ([{"id": -3, "name": "square", "isthing": 1}, {"id": 2, "name": "wall", "isthing": 0}], "has id -3: category ids must be integers >= 0"),
        ([{"id": 1, "name": "square", "isthing": 2}, {"id": 2, "name": "wall", "isthing": 0}], "has 'isthing' 2: it must be 1 (thing) or 0"),
        ([{"id": 1, "name": "sq|box", "isthing": 1}, {"id": 2, "name": "wall", "isthing": 0}],
         "category 1 'sq|box' cannot be a class name"),
    ],
)
def test_a_bad_category_table_is_refused_before_any_image_is_segmented(tmp_path, with_plugins, monkeypatch, capsys, categories, message):
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    ids = np.zeros((40, 40), np.int32)
    ids[TL] = 1
    data_dir = write_coco_dataset(tmp_path / "data", {"a": (ids, [seg(1, 1, ids)])}, categories)
    out = tmp_path / "eval"
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), *SETS]) == 2
    err = capsys.readouterr().err
    assert message in err and "panoptic.json" in err
    assert not out.exists()


def test_a_missing_ground_truth_png_is_refused_before_any_image_is_segmented(tmp_path, with_plugins, monkeypatch, capsys):
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    data_dir = hand_dataset(tmp_path / "data")
    (data_dir / "panoptic" / "b.png").unlink()
    out = tmp_path / "eval"
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), *SETS]) == 2
    assert f"1 ground-truth PNG(s) are missing (first: {data_dir / 'panoptic' / 'b.png'})" in capsys.readouterr().err
    assert not out.exists()
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), "--images", "a", *SETS]) == 0


def test_a_coco_name_with_a_comma_is_prompted_as_synonyms_and_scored_by_the_datasets_name(tmp_path, with_plugins, monkeypatch, capsys):
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    categories = [{**CATEGORIES[0], "name": "square, box"}, *CATEGORIES[1:]]
    a = np.zeros((40, 40), np.int32)
    a[TL], a[TR], a[BL], a[BR] = 1, 2, 3, 4
    data_dir = write_coco_dataset(tmp_path / "data", {"b": (a, [seg(1, 1, a), seg(2, 2, a), seg(3, 3, a), seg(4, 1, a)])}, categories)
    out = tmp_path / "eval"
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), "--json", *SETS]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"]["all"]["pq"] == 100.0 and data["results"]["per_category"]["square, box"]["tp"] == 2
    square = data["protocol"]["vocabulary"]["categories"][0]
    assert (square["name"], square["synonyms"]) == ("square", ["box"])


def test_the_protocol_holds_the_resolved_device_and_every_components_defaults(coco_sample, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(coco_sample), "--format", "coco-panoptic", "-o", str(out), "--limit", "1", "--json",
                 *coco_oracle(coco_sample)]) == 0
    resolved = json.loads(capsys.readouterr().out)["protocol"]["resolved"]
    assert resolved["device"] == "cpu" and resolved["device_profile"].startswith("cpu")
    assert resolved["components"]["fuser"]["detectron2"]["overlap_threshold"] == 0.5  # a default no preset states
    assert resolved["components"]["exporter"] == {"coco-panoptic": {"png_dir": "panoptic", "json_name": "panoptic.json"}}


def test_ground_truth_of_another_size_and_an_empty_annotation_list_are_refused_before_any_image(tmp_path, with_plugins, monkeypatch,
                                                                                               capsys):
    """Found by a tester: a wrong-size ground-truth PNG was found after segmenting the whole dataset
    (and blamed on the prediction); an empty annotation list said "see the errors above" with none
    above and left a folder with a manifest."""
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    data_dir = hand_dataset(tmp_path / "data")
    Image.fromarray(id_to_rgb(np.zeros((30, 40), np.int32))).save(data_dir / "panoptic" / "b.png")
    out = tmp_path / "eval"
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), *SETS]) == 2
    err = capsys.readouterr().err
    assert (f"the ground-truth PNG {data_dir / 'panoptic' / 'b.png'} is 40x30 but its image {data_dir / 'images' / 'b.png'} is 40x40: "
            "the ground truth must have its image's size") in err and "Traceback" not in err
    assert not out.exists()
    (data_dir / "panoptic" / "b.png").write_text("not a PNG")
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), *SETS]) == 2
    assert f"the ground-truth PNG {data_dir / 'panoptic' / 'b.png'} is not an image file Pillow can read" in capsys.readouterr().err
    assert not out.exists()
    data = json.loads((data_dir / "panoptic.json").read_text())
    (data_dir / "panoptic.json").write_text(json.dumps({**data, "annotations": []}))
    assert main(["evaluate", str(data_dir), "--format", "coco-panoptic", "-o", str(out), *SETS]) == 2
    err = capsys.readouterr().err
    assert f"{data_dir / 'panoptic.json'} annotates no image (its 'annotations' list is empty): there is nothing to evaluate" in err
    assert "see the errors above" not in err
    assert not out.exists()


def test_max_pixels_limits_the_ground_truth_pngs_and_names_its_option(tmp_path, with_plugins, monkeypatch, capsys):
    """``evaluate`` reads the dataset's ground-truth PNGs under ``--max-pixels`` (like eval, qa, package): a limit
    below the 40 x 40 PNGs is refused, before any image is segmented (nothing written), naming the option that
    changes it; 0 lifts the limit."""
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    data_dir = hand_dataset(tmp_path / "data")
    argv = ["evaluate", str(data_dir), "--format", "coco-panoptic", "--no-progress", "--json", *SETS]
    assert main([*argv, "-o", str(tmp_path / "small"), "--max-pixels", "1599"]) == 2
    err = capsys.readouterr().err
    assert "40 x 40 pixels" in err and "--max-pixels N" in err and "a.png" in err
    assert not (tmp_path / "small").exists()
    assert main([*argv, "-o", str(tmp_path / "neg"), "--max-pixels", "-1"]) == 2
    assert "--max-pixels must be >= 0 (0 = no limit), got -1" in capsys.readouterr().err
    assert main([*argv, "-o", str(tmp_path / "free"), "--max-pixels", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["images"]["evaluated"] == 2
