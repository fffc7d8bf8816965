"""``ovpanoptic eval --gt/--pred`` across the labelling formats: detection, classes, the review list."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.cli import main
from ovpanoptic.evaluation import EvaluationError
from ovpanoptic.formats.detect import detect_format
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


@pytest.mark.parametrize("pred", ["out", "out/panoptic.json", "out/label-studio.json", "out/cvat/annotations.xml", "out/cvat"])
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
    assert detect_format(out / "cvat" / "annotations.xml") == "cvat"
    assert detect_format(out / "cvat") == "cvat"
    assert detect_format(sample / "panoptic.json") == "coco-panoptic"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EvaluationError, match="cannot tell the annotation format of .*notes.txt: give it with --gt-format/--pred-format, one of coco-panoptic, cityscapes-panoptic, cityscapes, label-studio, cvat"):
        detect_format(tmp_path / "notes.txt")


def test_label_studio_against_cvat_takes_the_classes_of_ovpanoptic_s_own_tables(exports, capsys):
    _, out, _ = exports
    code, report = run_eval(capsys, "--gt", str(out / "cvat" / "annotations.xml"), "--pred", str(out / "label-studio.json"))
    assert code == 0, report
    assert report["all"]["pq"] == 1.0


def test_name_only_sets_without_any_table_ask_for_the_classes(exports, capsys, tmp_path):
    _, out, _ = exports
    copy = tmp_path / "tasks.json"
    shutil.copy(out / "label-studio.json", copy)  # away from its category table: the table in the tasks' meta is enough
    code, report = run_eval(capsys, "--gt", str(copy), "--pred", str(copy))
    assert code == 0 and report["all"]["pq"] == 1.0, report
    tasks = [{k: v for k, v in t.items() if k != "meta"} for t in json.loads(copy.read_text())]
    copy.write_text(json.dumps(tasks))  # a Label Studio export of tasks imported without it
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
    code, report = run_eval(capsys, "--gt", str(out / "cvat" / "annotations.xml"), "--gt-use", "annotations", "--pred", str(out))
    assert code == 2 and "--gt-use applies to Label Studio exports;" in report["error"] and "is cvat" in report["error"]


def test_errors_of_the_prediction_side_say_prediction(exports, capsys, tmp_path):
    sample, _, _ = exports
    broken = tmp_path / "cityscapes_panoptic_val.json"
    broken.write_text(json.dumps({"annotations": []}))
    code, report = run_eval(capsys, "--gt", str(sample / "panoptic.json"), "--pred", str(broken))
    assert code == 2 and "prediction JSON file" in report["error"] and "ground-truth" not in report["error"]


# -- hostile sizes: what an annotation file declares is bounded before anything is decoded ----------

#: Peak resident memory a refused hostile file may cost the eval process (its start-up is ~50 MB).
PEAK_LIMIT_MB = 1024
#: Address-space cap of the child, so that a regression fails fast instead of exhausting the machine.
_CHILD_AS_BYTES = 4 << 30
LIMIT_TEXT = "over the limit of 50 megapixels for one annotated image"
RAISE_TEXT = "raise the limit with --max-pixels N (max_pixels= in Python; 0 = no limit)"


#: Runs ``python -m ovpanoptic`` and, at exit, writes the process's own peak resident memory
#: (``VmHWM`` of /proc/self/status, in kB) as the last line of stderr. Measured inside the child
#: because the resource use ``wait4`` reports keeps the high-water mark the child inherited from a
#: large parent at ``fork`` (Linux preserves ``ru_maxrss`` across ``execve``).
_PEAK_RUNNER = """
import atexit, runpy, sys
def _peak():
    with open('/proc/self/status') as status:
        kb = next(line.split()[1] for line in status if line.startswith('VmHWM:'))
    sys.stderr.write('\\n' + 'PEAK_KB ' + kb + '\\n')
atexit.register(_peak)
sys.argv = ['ovpanoptic', *sys.argv[1:]]
runpy.run_module('ovpanoptic', run_name='__main__', alter_sys=True)
"""


def eval_in_child(*args: str, timeout: float = 120) -> tuple[int, str, float]:
    """``ovpanoptic eval ARGS`` in a child process of its own: ``(exit code, stderr, peak RSS in MB)``,
    the peak as the child itself measured it (see :data:`_PEAK_RUNNER`)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (_CHILD_AS_BYTES, _CHILD_AS_BYTES))

    with open(os.devnull, "wb") as sink, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-c", _PEAK_RUNNER, "eval", *args], stdout=sink, stderr=err, preexec_fn=cap,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        err.seek(0)
        text = err.read().decode()
    body, marker, peak = text.rpartition("PEAK_KB ")
    assert marker, f"the child did not report its peak memory (killed?): {text[-2000:]}"
    return process.returncode, body.rstrip("\n"), int(peak.strip()) / 1024


def ls_task(name: str, regions: list[dict], task_id: int = 1) -> dict:
    return {"id": task_id, "data": {"image": f"/data/local-files/?d={name}.jpg"}, "annotations": [{"id": 1, "result": regions}]}


def polygon(width: int, height: int, label: str = "car") -> dict:
    return {"id": "p1", "type": "polygonlabels", "original_width": width, "original_height": height,
            "value": {"points": [[0, 0], [90, 0], [90, 90]], "polygonlabels": [label]}}


def brush(width: int, height: int, rle: list[int], label: str = "car") -> dict:
    return {"id": "b1", "type": "brushlabels", "original_width": width, "original_height": height,
            "value": {"format": "rle", "rle": rle, "brushlabels": [label]}}


def cvat_xml(width: int, height: int, shape: str = '<polygon label="car" points="0,0;10,0;10,10" z_order="0"/>') -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><labels>'
        '<label><name>car</name><type>any</type></label></labels></task></meta>'
        f'<image id="0" name="a.jpg" width="{width}" height="{height}">{shape}</image></annotations>'
    )


def png_header_only(path: Path, width: int, height: int, bit_depth: int = 8, colour: int = 2) -> Path:
    """A PNG whose header declares ``width x height`` with (almost) no pixel data: opening it reads
    the size, decoding it would need the full image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def coco_set(
    folder: Path, size: tuple[int, int], png: Path | None = None, declared: tuple[int, int] | None = None, name: str = "a"
) -> Path:
    """A COCO panoptic set of one image ``name`` (a one-segment PNG of ``size``, or ``png``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "panoptic").mkdir(exist_ok=True)
    if png is None:
        ids = np.zeros((size[1], size[0], 3), np.uint8)
        ids[:4, :4, 0] = 1
        Image.fromarray(ids).save(folder / "panoptic" / f"{name}.png")
    else:
        png.replace(folder / "panoptic" / f"{name}.png")
    width, height = declared or size
    data = {
        "images": [{"id": 1, "file_name": f"{name}.jpg", "width": width, "height": height}],
        "annotations": [{"image_id": 1, "file_name": f"{name}.png", "segments_info": [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 16}]}],
        "categories": [{"id": 1, "name": "car", "isthing": 1}],
    }
    (folder / "panoptic.json").write_text(json.dumps(data))
    return folder / "panoptic.json"


def test_a_label_studio_polygon_declaring_40000x40000_is_refused_in_bounded_memory(tmp_path):
    export = tmp_path / "huge-polygon.json"
    export.write_text(json.dumps([ls_task("a", [polygon(40000, 40000)])]))
    assert export.stat().st_size < 2048
    code, err, peak = eval_in_child("--gt", str(export), "--pred", str(export), "--classes", "car")
    assert code == 2, err
    assert f"error: ground-truth Label Studio export {export}: task 1, image 'a', declares an image of 40000 x 40000 pixels (1600 megapixels), {LIMIT_TEXT}" in err
    assert RAISE_TEXT in err and "Traceback" not in err
    assert peak < PEAK_LIMIT_MB


def test_a_brush_rle_whose_header_claims_20000x20000_is_refused_before_decoding(tmp_path):
    announced = list((20000 * 20000 * 4).to_bytes(4, "big"))
    hostile = announced + [0] * 800_000  # ~825 KB of JSON
    export = tmp_path / "huge-brush.json"
    # the region claims its image is 20000 x 20000: the pixel limit refuses it
    export.write_text(json.dumps([ls_task("a", [brush(20000, 20000, hostile)])]))
    code, err, peak = eval_in_child("--gt", str(export), "--pred", str(export), "--classes", "car")
    assert code == 2 and "task 1, image 'a', declares an image of 20000 x 20000 pixels (400 megapixels)" in err, err
    assert peak < PEAK_LIMIT_MB
    # the region claims a small image, the RLE's header 20000 x 20000 x 4 values: refused from the header
    export.write_text(json.dumps([ls_task("a", [brush(64, 48, hostile)])]))
    code, err, peak = eval_in_child("--gt", str(export), "--pred", str(export), "--classes", "car")
    assert code == 2, err
    assert ("region 'b1': the brush RLE announces 1600000000 values, not 48 x 64 x 4 (original_height x original_width x "
            "RGBA): the region does not belong to an image of this size, or the RLE is damaged") in err
    assert peak < PEAK_LIMIT_MB


def test_a_cvat_image_declared_40000x40000_is_refused_in_bounded_memory(tmp_path):
    xml = tmp_path / "annotations.xml"
    xml.write_text(cvat_xml(40000, 40000))
    code, err, peak = eval_in_child("--gt", str(xml), "--pred", str(xml), "--classes", "car")
    assert code == 2, err
    assert f"error: ground-truth CVAT export {xml}: image 'a.jpg' declares an image of 40000 x 40000 pixels (1600 megapixels), {LIMIT_TEXT}" in err
    assert peak < PEAK_LIMIT_MB
    # a mask box far beyond its image (whose run lengths do cover the box) is refused before Datumaro decodes it
    xml.write_text(cvat_xml(64, 48, '<mask label="car" left="0" top="0" width="40000" height="40000" rle="1600000000" z_order="0"/>'))
    code, err, peak = eval_in_child("--gt", str(xml), "--pred", str(xml), "--classes", "car")
    assert code == 2, err
    assert "image 'a.jpg': a 'car' mask's box (40000 x 40000 at 0, 0) does not lie inside the 64 x 48 image" in err
    assert peak < PEAK_LIMIT_MB


def test_sizes_are_compared_with_the_other_side_before_masks_are_decoded(tmp_path):
    gt = coco_set(tmp_path / "gt", (64, 48))
    export = tmp_path / "huge-polygon.json"
    export.write_text(json.dumps([ls_task("a", [polygon(40000, 40000)])]))
    # even with the limit lifted, the prediction's declared size is compared with the ground truth's first
    code, err, peak = eval_in_child("--gt", str(gt), "--pred", str(export), "--max-pixels", "0")
    assert code == 2, err
    assert (f"error: a (ground truth {gt}, prediction {export}): prediction size 40000x40000 (WxH) differs from "
            "ground-truth size 64x48; a prediction must have the size of its ground-truth image") in err
    assert peak < PEAK_LIMIT_MB


def test_the_limit_is_an_option_and_a_declared_size_under_it_is_read(tmp_path, capsys):
    export = tmp_path / "small.json"
    export.write_text(json.dumps([ls_task("a", [polygon(64, 48)])]))
    code, report = run_eval(capsys, "--gt", str(export), "--pred", str(export), "--classes", "car", "--max-pixels", "3072")
    assert code == 0 and report["all"]["pq"] == 1.0, report
    code, report = run_eval(capsys, "--gt", str(export), "--pred", str(export), "--classes", "car", "--max-pixels", "3071")
    assert code == 2 and "declares an image of 64 x 48 pixels (0.003072 megapixels), over the limit of 0.003071 megapixels" in report["error"]
    code, report = run_eval(capsys, "--gt", str(export), "--pred", str(export), "--classes", "car", "--max-pixels", "-1")
    assert code == 2 and "--max-pixels must be >= 0 (0 = no limit), got -1" in report["error"]


def test_coco_pngs_over_the_limit_or_of_another_size_than_their_json_are_refused_from_the_header(tmp_path, capsys):
    big = coco_set(tmp_path / "big", (9000, 9000), png=png_header_only(tmp_path / "big.png", 9000, 9000), declared=(9000, 9000))
    code, report = run_eval(capsys, "--gt", str(big), "--pred", str(big))
    assert code == 2, report
    assert f"a: ground-truth PNG {tmp_path / 'big' / 'panoptic' / 'a.png'} declares an image of 9000 x 9000 pixels (81 megapixels), {LIMIT_TEXT}" in report["error"]
    liar = coco_set(tmp_path / "liar", (64, 48), declared=(32, 24))
    good = coco_set(tmp_path / "good", (32, 24))
    code, report = run_eval(capsys, "--gt", str(good), "--pred", str(liar))
    assert code == 2, report
    assert (f"a: prediction PNG {tmp_path / 'liar' / 'panoptic' / 'a.png'} is 64 x 48 pixels, but its JSON declares 32 x 24 "
            "(width x height)") in report["error"]
    # the legacy four-file form is bounded too
    code, report = run_eval(capsys, "--gt-json", str(big), "--gt-dir", str(tmp_path / "big" / "panoptic"),
                            "--pred-json", str(big), "--pred-dir", str(tmp_path / "big" / "panoptic"))
    assert code == 2 and "declares an image of 9000 x 9000 pixels (81 megapixels)" in report["error"], report


def test_cityscapes_sets_are_bounded_and_name_their_side(tmp_path, capsys):
    pytest.importorskip("cityscapesscripts")
    from ovpanoptic.evaluation import read_cityscapes

    name = "ulm_000000_000001"
    city = tmp_path / "gtFine" / "val" / "ulm"
    city.mkdir(parents=True)
    png = city / f"{name}_gtFine_instanceIds.png"
    gt = coco_set(tmp_path / "gt", (64, 48), name=name)
    # an error of the prediction side names the prediction
    values = np.full((48, 64), 7, np.uint16)
    values[0, 0] = 40123
    Image.fromarray(values).save(png)
    code, report = run_eval(capsys, "--gt", str(gt), "--pred", str(tmp_path / "gtFine"), "--match-categories", "name")
    assert code == 2, report
    assert f"error: {name}: prediction PNG {png} holds the value 40123, whose label id 40 is no Cityscapes label" in report["error"]
    assert "ground-truth" not in report["error"]
    # a PNG over the limit is refused from its header; a size unlike the other side's before decoding
    png_header_only(png, 9000, 9000, bit_depth=16, colour=0)
    with pytest.raises(EvaluationError, match=rf"^{name}: prediction PNG .* declares an image of 9000 x 9000 pixels \(81 megapixels\), {LIMIT_TEXT}"):
        read_cityscapes(tmp_path / "gtFine", role="prediction").read(name)
    code, report = run_eval(capsys, "--gt", str(gt), "--pred", str(tmp_path / "gtFine"), "--match-categories", "name")
    assert code == 2, report
    assert f"{name} (ground truth {gt}, prediction {tmp_path / 'gtFine'}): prediction size 9000x9000 (WxH) differs from ground-truth size 64x48" in report["error"]


def test_files_that_are_no_eval_format_say_what_they_are_and_what_to_pass(exports, capsys, tmp_path):
    sample, out, _ = exports
    gt = str(sample / "panoptic.json")
    config = out / "label-studio.xml"
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(config))
    assert code == 2 and report["error"] == (
        f"error: prediction file {config} is a Label Studio labelling config, not an export: pass the tasks file beside it "
        f"({out / 'label-studio.json'}), or Label Studio's JSON export of the project (Export -> JSON)\n"
    )
    # Named as CVAT explicitly, the config is still recognised (not handed to Datumaro).
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(config), "--pred-format", "cvat")
    assert code == 2 and "is a Label Studio labelling config, not an export" in report["error"]
    other = tmp_path / "other.xml"
    other.write_text("<dataset><item/></dataset>", "utf-8")
    with pytest.raises(EvaluationError) as caught:
        detect_format(other, "prediction")
    assert str(caught.value) == (
        f"prediction file {other} is an XML file with the root element <dataset>, not a CVAT for images 1.1 export (root "
        "<annotations>): pass CVAT's annotations.xml (Export annotations -> CVAT for images 1.1)"
    )
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(empty))
    assert code == 2 and report["error"] == (
        f"error: prediction XML file {empty} is not well-formed XML (line 1, column 1: no element found): the file is "
        "empty or cut off; export it again\n"
    )
    bare = tmp_path / "bare" / "annotations.xml"
    bare.parent.mkdir()
    bare.write_text("<annotations><version>1.1</version></annotations>", "utf-8")
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(bare.parent), "--vocabulary", "coco")
    assert code == 2 and report["error"] == (
        f"error: prediction CVAT export {bare} has no <meta> with a <task>, <job> or <project> (where CVAT lists the "
        "labels): it is not a complete CVAT for images 1.1 export (an empty or hand-made <annotations> file?); export the "
        "annotations from CVAT again (Export annotations -> CVAT for images 1.1), or from ovpanoptic with --format cvat\n"
    )


@pytest.mark.parametrize("name", ["instances.json", "instances_results.json"])
def test_coco_instances_is_refused_naming_the_coco_panoptic_export(exports, capsys, tmp_path, name):
    sample, _, _ = exports
    if name == "instances.json":
        content = {"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 3}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]], "bbox": [0, 0, 2, 2], "area": 2}],
                   "categories": [{"id": 1, "name": "person"}]}
    else:
        content = [{"image_id": 1, "category_id": 1, "segmentation": {"size": [3, 4], "counts": "0"}, "score": 0.9}]
    path = tmp_path / name
    path.write_text(json.dumps(content))
    code, report = run_eval(capsys, "--gt", str(sample / "panoptic.json"), "--pred", str(path))
    assert code == 2 and report["error"] == (
        f"error: prediction file {path} is COCO instances (things only), which is not an eval format (it has no stuff, so "
        "every stuff segment would count as a false positive): pass the coco-panoptic export of the same run "
        "(OUTDIR/panoptic.json or OUTDIR; segment with --format coco-panoptic), or compare instances with pycocotools' "
        "COCOeval\n"
    )


def test_reading_errors_name_the_side_the_file_and_the_fix(exports, capsys, tmp_path):
    sample, out, _ = exports
    gt = str(sample / "panoptic.json")
    tasks = (out / "label-studio.json").read_text("utf-8")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(tasks[: len(tasks) // 2], "utf-8")
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(truncated), "--pred-format", "label-studio")
    assert code == 2
    assert re.fullmatch(
        rf"error: prediction Label Studio export {re.escape(str(truncated))} is not valid JSON \(line \d+, column \d+: "
        r"[A-Z][^():]+\): the file is truncated \(it ends mid-way\); export it again\n",
        report["error"],
    ), report["error"]
    latin = tmp_path / "latin.json"
    latin.write_bytes(tasks.replace('"label"', '"lab\u00e9l"', 1).encode("latin-1", "replace"))
    code, report = run_eval(capsys, "--gt", str(latin), "--gt-format", "label-studio", "--pred", gt)
    assert code == 2 and report["error"].startswith(f"error: ground-truth Label Studio export {latin} is not UTF-8 text (byte 0xe9 at position ")
    assert report["error"].endswith("): JSON exports are UTF-8; save the file as UTF-8, or export it again\n")
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(empty), "--pred-format", "coco-panoptic")
    assert code == 2 and report["error"] == (
        f"error: prediction JSON file {empty} is empty: the export did not finish or was cut off; export it again\n"
    )
    xml = (out / "cvat" / "annotations.xml").read_bytes()
    bad_xml = tmp_path / "cvat" / "annotations.xml"
    bad_xml.parent.mkdir()
    bad_xml.write_bytes(xml.replace(b"</annotations>", "<!-- caf\u00e9 -->".encode("latin-1") + b"</annotations>"))
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(bad_xml))
    assert code == 2 and report["error"].startswith(f"error: prediction CVAT export {bad_xml} is not well-formed XML (line ")
    assert report["error"].endswith(
        ": not well-formed (invalid token)): it holds bytes that are not text in its declared encoding (e.g. Latin-1 in a "
        "UTF-8 file) or a character XML cannot hold: save it as UTF-8, or export it again\n"
    )
    folder = tmp_path / "no-export"
    folder.mkdir()
    code, report = run_eval(capsys, "--gt", gt, "--pred", str(folder), "--pred-format", "label-studio")
    assert code == 2 and report["error"] == (
        f"error: prediction folder {folder} holds no label-studio.json (the label-studio export ovpanoptic writes): pass "
        "the label-studio file itself, or the output folder of 'ovpanoptic segment ... --format label-studio'\n"
    )
