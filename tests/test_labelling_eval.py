"""``ovpanoptic eval --gt/--pred`` across the labelling formats: detection, classes, the review list."""

from __future__ import annotations

import json
import shutil

import pytest

from ovpanoptic.cli import main
from ovpanoptic.evaluation import EvaluationError
from ovpanoptic.evaluation.readers import detect_format
from ovpanoptic.imageio import read_image
from ovpanoptic.pipeline import Pipeline

pytest.importorskip("label_studio_sdk")
pytest.importorskip("datumaro")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The oracle pipeline on the two COCO images, exported as COCO panoptic, Label Studio and CVAT."""
    from conftest import COCO_SAMPLE

    if not COCO_SAMPLE.is_dir():
        pytest.skip("COCO sample fixture not found")
    tmp = tmp_path_factory.mktemp("labelling-eval")
    gt = f'gt_json = "{COCO_SAMPLE / "panoptic.json"}"\ngt_dir = "{COCO_SAMPLE / "panoptic"}"\nimages_dir = "{COCO_SAMPLE / "images"}"\n'
    config = tmp / "oracle.toml"
    config.write_text(
        "[pipeline]\nproposal_generator = \"oracle\"\nclassifier = \"oracle\"\nfuser = \"detectron2\"\n"
        "exporters = [\"coco-panoptic\", \"label-studio\", \"cvat\"]\nmax_side = 0\ndevice = \"cpu\"\n"
        f"[proposal_generator.oracle]\n{gt}[classifier.oracle]\n{gt}[fuser.detectron2]\nstuff_area_thresh = 0\n"
    )
    pipe = Pipeline(config)
    vocab = pipe.vocabulary(name="coco")
    out = tmp / "out"
    stems = []
    for path in sorted((COCO_SAMPLE / "images").glob("*.jpg")):
        image = read_image(path)
        pipe.export(pipe.segment(image, vocab), image, out, path.stem, finish=False)
        stems.append(path.stem)
    for name in ("coco-panoptic", "label-studio", "cvat"):
        pipe.component("exporter", name).finish(out, stems)
    return COCO_SAMPLE, out, tmp


def run_eval(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["eval", *args, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else {"error": captured.err})


@pytest.mark.parametrize("pred", ["out", "out/panoptic.json", "out/label-studio.json", "out/annotations.xml"])
def test_every_export_scores_pq_100_against_the_coco_ground_truth(exports, capsys, pred):
    sample, out, tmp = exports
    code, report = run_eval(capsys, "--gt", str(sample / "panoptic.json"), "--pred", str(tmp / pred))
    assert code == 0, report
    assert (report["all"]["pq"], report["things"]["n"], report["stuff"]["n"], report["n_images"]) == (1.0, 4, 4, 2)
    assert report["needs_review"] == [] and [i["pq"] for i in report["images"]] == [1.0, 1.0]


def test_formats_are_detected_and_unknown_ones_named(exports, tmp_path):
    sample, out, _ = exports
    assert detect_format(out) == "coco-panoptic"
    assert detect_format(out / "label-studio.json") == "label-studio"
    assert detect_format(out / "annotations.xml") == "cvat"
    assert detect_format(sample / "panoptic.json") == "coco-panoptic"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EvaluationError, match="cannot tell the annotation format of .*notes.txt: give it with --gt-format/--pred-format, one of coco-panoptic, cityscapes-panoptic, cityscapes, label-studio, cvat"):
        detect_format(tmp_path / "notes.txt")


def test_label_studio_against_cvat_takes_the_classes_of_ovpanoptic_s_own_tables(exports, capsys):
    _, out, _ = exports
    code, report = run_eval(capsys, "--gt", str(out / "annotations.xml"), "--pred", str(out / "label-studio.json"))
    assert code == 0, report
    assert report["all"]["pq"] == 1.0


def test_name_only_sets_without_any_table_ask_for_the_classes(exports, capsys, tmp_path):
    _, out, _ = exports
    copy = tmp_path / "tasks.json"
    shutil.copy(out / "label-studio.json", copy)  # away from its category table
    code, report = run_eval(capsys, "--gt", str(copy), "--pred", str(copy))
    assert code == 2
    assert "names its classes but gives no ids or thing/stuff split: give the classes with --classes/--stuff or --vocabulary" in report["error"]
    code, report = run_eval(capsys, "--gt", str(copy), "--pred", str(copy), "--vocabulary", "coco")
    assert code == 0 and report["all"]["pq"] == 1.0
    code, report = run_eval(capsys, "--gt", str(copy), "--pred", str(copy), "--classes", "person, car")
    assert code == 2 and "has classes that are not in the vocabulary: " in report["error"]


def test_a_corrected_export_lists_the_image_to_review(exports, capsys, tmp_path):
    _, out, _ = exports
    tasks = json.loads((out / "label-studio.json").read_text())
    # The annotator accepted the first image as it was, and gave the first region of the second another class.
    for position, task in enumerate(tasks):
        task["annotations"] = [{"id": position + 1, "result": json.loads(json.dumps(task["predictions"][0]["result"]))}]
    region = tasks[1]["annotations"][0]["result"][0]
    old = region["value"]["brushlabels"][0]
    new = "car" if old != "car" else "truck"
    region["value"]["brushlabels"] = [new]
    n = len(tasks[1]["predictions"][0]["result"])
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    code, report = run_eval(
        capsys, "--gt", str(export), "--gt-use", "annotations", "--pred", str(export), "--pred-use", "predictions",
        "--vocabulary", "coco", "--review-below", "100",
    )
    assert code == 0, report
    assert report["needs_review"] == ["000000439180"]
    # The relabelled region is an FP of its old class and an FN of its new one; every other segment matches.
    assert report["images"][0] == {
        "image": "000000439180", "pq": report["images"][0]["pq"], "tp": n - 1, "fp": 1, "fn": 1, "changed": sorted([old, new]),
    }
    assert report["images"][0]["pq"] < 1.0
    assert report["images"][1] == {"image": "000000142238", "pq": 1.0, "tp": report["images"][1]["tp"], "fp": 0, "fn": 0, "changed": []}


def test_bad_eval_arguments_are_named(capsys, tmp_path):
    code, report = run_eval(capsys, "--gt", "x")
    assert code == 2 and "give the ground truth and the predictions: --gt PATH --pred PATH" in report["error"]
    code, report = run_eval(capsys, "--gt", "x", "--pred", "y", "--gt-json", "z")
    assert code == 2 and "give either --gt/--pred or --gt-json/--gt-dir/--pred-json/--pred-dir, not both" in report["error"]
    code, report = run_eval(capsys, "--gt", str(tmp_path), "--pred", str(tmp_path), "--review-below", "150")
    assert code == 2 and "--review-below is a PQ in percent (0 to 100), got 150.0" in report["error"]
    code, report = run_eval(capsys, "--gt", str(tmp_path / "missing"), "--pred", str(tmp_path))
    assert code == 2 and "missing does not exist" in report["error"]


def test_label_studio_sets_say_what_they_could_not_read(exports, capsys, tmp_path):
    _, out, _ = exports
    tasks = json.loads((out / "label-studio.json").read_text())
    export = tmp_path / "export.json"
    # No annotation at all, read as annotations: said, not scored as empty ground truth.
    export.write_text(json.dumps(tasks))
    code, report = run_eval(capsys, "--gt", str(export), "--gt-use", "annotations", "--pred", str(export), "--vocabulary", "coco")
    assert code == 2 and "has an annotation (that is not cancelled): read its predictions instead" in report["error"]
    # One task annotated (with a rectangle that is no mask), one not: both said in the notes.
    tasks[0]["annotations"] = [{"id": 1, "result": tasks[0]["predictions"][0]["result"] + [
        {"id": "r", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["car"]}}
    ]}]
    export.write_text(json.dumps(tasks))
    code, report = run_eval(capsys, "--gt", str(export), "--gt-use", "annotations", "--pred", str(export), "--pred-use", "predictions", "--vocabulary", "coco")
    assert code == 0, report
    assert report["notes"][:2] == [
        "ground truth: 1 of 2 task(s) have no annotation: read as unlabelled (all void)",
        "ground truth: regions that are not masks were skipped: 1 rectanglelabels",
    ]
    # A task without an image URL, and a damaged RLE, are named.
    del tasks[1]["data"]["image"]
    export.write_text(json.dumps(tasks))
    code, report = run_eval(capsys, "--gt", str(export), "--pred", str(export), "--vocabulary", "coco")
    assert code == 2 and "task 1 has no image URL in data (no field holds an image URL)" in report["error"]
    tasks[1]["data"]["image"] = "/data/local-files/?d=b.jpg"
    tasks[1]["predictions"][0]["result"][0]["value"]["rle"] = [0, 0]
    export.write_text(json.dumps(tasks))
    code, report = run_eval(capsys, "--gt", str(export), "--gt-use", "predictions", "--pred", str(export), "--pred-use", "predictions", "--vocabulary", "coco")
    assert code == 2 and "the brush RLE is truncated or corrupt" in report["error"] and "base 2" not in report["error"]


def test_use_options_apply_to_label_studio_sets_only(exports, capsys):
    sample, out, _ = exports
    code, report = run_eval(capsys, "--gt", str(out / "annotations.xml"), "--gt-use", "annotations", "--pred", str(out))
    assert code == 2 and "--gt-use applies to Label Studio exports;" in report["error"] and "is cvat" in report["error"]


def test_errors_of_the_prediction_side_say_prediction(exports, capsys, tmp_path):
    sample, _, _ = exports
    broken = tmp_path / "cityscapes_panoptic_val.json"
    broken.write_text(json.dumps({"annotations": []}))
    code, report = run_eval(capsys, "--gt", str(sample / "panoptic.json"), "--pred", str(broken))
    assert code == 2 and "prediction JSON file" in report["error"] and "ground-truth" not in report["error"]
