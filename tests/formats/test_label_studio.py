"""The ``label-studio`` exporter and the Label Studio reader (no server: see test_label_studio_server.py).

Masks are decoded with the Label Studio SDK's own ``decode_rle`` and compared pixel for pixel with the
results; the reader's round trip is scored with the PQ evaluator against the COCO ground truth.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ovpanoptic.cli import main
from ovpanoptic.errors import ExportError
from ovpanoptic.evaluation import EvaluationError, evaluate_annotations
from ovpanoptic.formats.coco_panoptic import read_coco_panoptic
from ovpanoptic.formats.common import CategoryInfo
from ovpanoptic.formats.label_studio import read_label_studio
from ovpanoptic.imageio import read_image
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.types import Category, PanopticResult, Vocabulary

decode_rle = pytest.importorskip("label_studio_sdk.converter.brush").decode_rle


def oracle_config(sample: Path, tmp_path: Path, extra: str = "") -> Path:
    gt = f'gt_json = "{sample / "panoptic.json"}"\ngt_dir = "{sample / "panoptic"}"\nimages_dir = "{sample / "images"}"\n'
    path = tmp_path / "oracle-ls.toml"
    path.write_text(
        "[pipeline]\nproposal_generator = \"oracle\"\nclassifier = \"oracle\"\n"
        "fuser = \"detectron2\"\nexporters = [\"coco-panoptic\", \"label-studio\"]\n"
        "max_side = 0\ndevice = \"cpu\"\n"
        f"[proposal_generator.oracle]\n{gt}[classifier.oracle]\n{gt}"
        "[fuser.detectron2]\nstuff_area_thresh = 0\n" + extra
    )
    return path


@pytest.fixture(scope="module")
def ls_run(tmp_path_factory):
    """The oracle pipeline over the two COCO images, exported as COCO panoptic and Label Studio tasks."""
    from conftest import COCO_SAMPLE

    if not COCO_SAMPLE.is_dir():
        pytest.skip("COCO sample fixture not found")
    tmp = tmp_path_factory.mktemp("ls")
    pipe = Pipeline(oracle_config(COCO_SAMPLE, tmp, "[exporter.label-studio]\npolygons = true\n"))
    vocab = pipe.vocabulary(name="coco")
    out = tmp / "out"
    results = {}
    stems = []
    for image_path in sorted((COCO_SAMPLE / "images").glob("*.jpg")):
        image = read_image(image_path)
        result = pipe.segment(image, vocab)
        pipe.export(result, image, out, image_path.stem, finish=False)
        results[image_path.stem] = result
        stems.append(image_path.stem)
    for name in ("coco-panoptic", "label-studio"):
        pipe.component("exporter", name).finish(out, stems)
    return out, results, vocab


def test_brush_regions_decode_to_our_masks_pixel_for_pixel(ls_run):
    out, results, _ = ls_run
    tasks = json.loads((out / "label-studio.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["/data/local-files/?d=000000142238.jpg", "/data/local-files/?d=000000439180.jpg"]
    for task, (stem, result) in zip(tasks, sorted(results.items())):
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "ovpanoptic-0.1.0"
        assert prediction["score"] == pytest.approx(np.mean([s.score for s in result.segments]), abs=1e-6)
        brushes = [r for r in prediction["result"] if r["type"] == "brushlabels"]
        assert len(brushes) == len(result.segments)
        names = {c.id: c.name for c in result.vocabulary.categories}
        h, w = result.image_size
        for region, segment in zip(brushes, result.segments):
            assert (region["from_name"], region["to_name"], region["original_width"], region["original_height"]) == ("label", "image", w, h)
            assert region["value"]["brushlabels"] == [names[segment.category_id]]
            assert region["score"] == round(segment.score, 6)
            rgba = decode_rle(bytes(region["value"]["rle"])).reshape(h, w, 4)
            np.testing.assert_array_equal(rgba[:, :, 3] == 255, result.panoptic_map == segment.id)
            assert set(np.unique(rgba).tolist()) <= {0, 255}


def test_labelling_config_lists_every_class_with_its_colour(ls_run):
    out, _, vocab = ls_run
    root = ET.fromstring((out / "label-studio.xml").read_text())
    image = root.find("Image")
    assert (image.get("name"), image.get("value")) == ("image", "$image")
    brush = root.find("BrushLabels")
    assert (brush.get("name"), brush.get("toName")) == ("label", "image")
    labels = [(label.get("value"), label.get("background")) for label in brush.findall("Label")]
    assert len(labels) == 133
    assert labels[0] == ("person", "#dc143c")  # COCO's person colour (220, 20, 60)
    polygon = root.find("PolygonLabels")
    assert polygon.get("name") == "polygon" and len(polygon.findall("Label")) == 133


def test_reader_round_trip_scores_pq_100_against_coco_ground_truth(ls_run, coco_sample):
    out, _, vocab = ls_run
    truth = read_coco_panoptic(coco_sample / "panoptic.json")
    read = read_label_studio(out / "label-studio.json", truth.categories)
    assert read.annotations.names == ("000000142238", "000000439180")
    assert read.used == {"annotations": 0, "predictions": 2, "none": 0}
    agreement = evaluate_annotations(truth, read.annotations)
    assert (agreement.report.all.pq, agreement.report.things.n, agreement.report.stuff.n) == (1.0, 4, 4)
    assert [i.pq for i in agreement.images] == [1.0, 1.0] and agreement.needs_review == ()


def test_polygons_are_outlines_of_the_brush_masks_and_not_counted_twice(ls_run, coco_sample):
    from ovpanoptic.formats.label_studio import fill_polygon

    out, results, _ = ls_run
    tasks = json.loads((out / "label-studio.json").read_text())
    result = results["000000439180"]
    h, w = result.image_size
    regions = tasks[1]["predictions"][0]["result"]
    polygons = [r for r in regions if r["type"] == "polygonlabels"]
    assert {r["id"].split("p")[0] for r in polygons} == {f"s{s.id}" for s in result.segments}
    for segment in result.segments:
        mask = result.panoptic_map == segment.id
        own = [r for r in polygons if r["id"].split("p")[0] == f"s{segment.id}"]
        filled = np.zeros_like(mask)
        for region in own:
            assert region["value"]["polygonlabels"] == regions[[r["id"] for r in regions].index(f"s{segment.id}")]["value"]["brushlabels"]
            filled |= fill_polygon(region["value"]["points"], h, w, "test")
        # The outer contours (through boundary pixel centres) cover the segment but slivers and 1-2 pixel specks.
        assert (filled & mask).sum() / mask.sum() > 0.97, segment
    # Read together with the brushes, the derived polygons are not counted twice (PQ 1 above).
    truth = read_coco_panoptic(coco_sample / "panoptic.json")
    image = read_label_studio(out / "label-studio.json", truth.categories).annotations.read("000000439180")
    assert len(image.segments) == len(result.segments)


def small_result(names=("car", "road"), things=(True, False)) -> PanopticResult:
    vocab = Vocabulary(tuple(Category(i + 1, n, t) for i, (n, t) in enumerate(zip(names, things))))
    pm = np.zeros((6, 8), np.int32)
    pm[0:2, 0:3] = 1
    pm[3:6, :] = 2
    from ovpanoptic.types import Segment

    segments = (Segment(1, 1, things[0], 0.9, 6, (0, 0, 3, 2)), Segment(2, 2, things[1], 0.5, 24, (0, 3, 8, 6)))
    return PanopticResult(pm, segments, vocab)


def test_class_names_are_escaped_in_the_config_and_control_characters_refused(tmp_path):
    from ovpanoptic.formats.label_studio import LabelStudioConfig, LabelStudioExporter

    exporter = LabelStudioExporter(LabelStudioConfig())
    result = small_result(names=('fork & "lift" <big>', "road"))
    exporter.export(result, np.zeros((6, 8, 3), np.uint8), tmp_path, "a")
    labels = [label.get("value") for label in ET.parse(tmp_path / "label-studio.xml").getroot().iter("Label")]
    assert labels == ['fork & "lift" <big>', "road"]
    # The vocabulary refuses C0/C1 controls itself; XML also forbids U+FFFE and U+FFFF.
    bad = small_result(names=("fork\ufffelift", "road"))
    with pytest.raises(ExportError, match=re.escape("class name 'fork\\ufffelift' contains the character U+FFFE, which")):
        exporter.check_output(tmp_path / "other", bad.vocabulary)


def test_image_url_template_and_bad_options(tmp_path):
    from ovpanoptic.formats.label_studio import LabelStudioConfig, LabelStudioExporter

    exporter = LabelStudioExporter(LabelStudioConfig(image_url="s3://bucket/{stem}/{file_name}", image_ext=".png"))
    assert exporter.image_url("a") == "s3://bucket/a/a.png"
    with pytest.raises(ValueError, match=r"image_url '/x/\{name\}' is not a valid template"):
        LabelStudioConfig(image_url="/x/{name}")
    with pytest.raises(ValueError, match="image_ext must start with '.'"):
        LabelStudioConfig(image_ext="png")
    with pytest.raises(ValueError, match="from_name 'my label' must be a plain tag name"):
        LabelStudioConfig(from_name="my label")


def test_reader_uses_the_corrected_annotation_and_names_unknown_classes(tmp_path):
    from ovpanoptic.formats.label_studio import LabelStudioConfig, LabelStudioExporter

    exporter = LabelStudioExporter(LabelStudioConfig())
    result = small_result()
    regions = exporter.regions(result)
    corrected = [dict(regions[0], value={**regions[0]["value"], "brushlabels": ["road"]}), regions[1]]
    task = {
        "id": 7,
        "data": {"image": "/data/upload/3/1f2e3d4c-a.jpg"},
        "annotations": [
            {"id": 1, "was_cancelled": True, "result": []},
            {"id": 2, "result": corrected},
        ],
        "predictions": [{"result": regions}],
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task]))
    cats = [CategoryInfo(1, "car", True), CategoryInfo(2, "road", False)]
    annotations = read_label_studio(path, cats).annotations
    image = annotations.read("a")
    # The car became road: both road regions merge into the one road segment (stuff).
    assert image.segments == ({"id": 1, "category_id": 2, "iscrowd": 0, "area": 30},)
    assert int((image.panoptic_map == 1).sum()) == 30
    predicted = read_label_studio(path, cats, use="predictions").annotations
    agreement = evaluate_annotations(annotations, predicted)
    # gt: road (30 px). pred: car (6 px), road (24 px). road IoU 24/30 = 0.8 -> TP; the car is an FP of
    # "car", a class absent from the gt, so it is counted: car PQ 0 (FP 1), road PQ 0.8 -> All 0.4.
    assert agreement.report.per_category[2].pq == pytest.approx(0.8)
    assert agreement.report.per_category[1].fp == 1
    assert agreement.report.all.pq == pytest.approx(0.4)
    assert [i.name for i in agreement.needs_review] == ["a"] and agreement.images[0].changed == ("car", "road")
    with pytest.raises(EvaluationError, match=r"classes that are not in the vocabulary: 'road' \(2 regions\)"):
        read_label_studio(path, [CategoryInfo(1, "car", True)])


def test_eval_cli_reads_a_label_studio_export_against_coco(ls_run, coco_sample, capsys):
    out, _, _ = ls_run
    code = main([
        "eval", "--gt", str(coco_sample / "panoptic.json"), "--pred", str(out / "label-studio.json"), "--json",
    ])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["all"]["pq"] == 1.0 and report["needs_review"] == []



def _polygon_task(task_id: int, name: str) -> dict:
    region = {"id": "p", "type": "polygonlabels", "original_width": 8, "original_height": 6,
              "value": {"points": [[0, 0], [50, 0], [50, 50]], "polygonlabels": ["car"]}}
    return {"id": task_id, "data": {"image": f"/data/local-files/?d={name}.jpg"}, "annotations": [{"id": 1, "result": [region]}]}


def test_an_export_wrapped_in_tasks_is_read_and_other_shapes_say_what_was_expected(tmp_path):
    from ovpanoptic.formats.detect import detect_format

    cats = [CategoryInfo(1, "car", True)]
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps([_polygon_task(1, "a"), _polygon_task(2, "b")]))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"tasks": [_polygon_task(1, "a"), _polygon_task(2, "b")]}))
    assert detect_format(wrapped) == "label-studio"
    read = read_label_studio(wrapped, cats).annotations
    assert read.names == ("a", "b") and read.size("a") == (8, 6)
    assert np.array_equal(read.read("b").panoptic_map, read_label_studio(listed, cats).annotations.read("b").panoptic_map)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"project": 1, "items": []}))
    with pytest.raises(EvaluationError) as caught:
        read_label_studio(other, cats, role="prediction")
    assert str(caught.value) == (
        f"prediction Label Studio export {other} is not a Label Studio JSON export (a dict with the keys 'project', "
        "'items'): expected a list of tasks (Export -> JSON), each a dict with 'data' (the image URL) and 'annotations' "
        "or 'predictions'; one task dict, or {\"tasks\": [...]}, is accepted too"
    )


def test_tasks_over_max_file_mb_are_split_into_numbered_files_with_a_warning(ls_run, tmp_path, caplog):
    from ovpanoptic.formats.label_studio import LabelStudioConfig, LabelStudioExporter, task_files

    out, results, _ = ls_run
    whole = json.loads((out / "label-studio.json").read_text())
    sizes = [len(json.dumps(t).encode()) for t in whole]
    split = tmp_path / "split"
    import shutil

    shutil.copytree(out / ".ovpanoptic", split / ".ovpanoptic")
    (split / "label-studio.json").write_text("[]")  # an earlier, smaller batch's file goes
    exporter = LabelStudioExporter(LabelStudioConfig(max_file_mb=(max(sizes) + 10) / 1e6))
    with caplog.at_level("WARNING", logger="ovpanoptic.formats.label_studio.writer"):
        written = exporter.finish(split, sorted(results))
    assert [p.name for p in written] == ["label-studio.1.json", "label-studio.2.json"]
    assert task_files(split) == written and not (split / "label-studio.json").exists()
    assert [t for p in written for t in json.loads(p.read_text())] == whole
    assert all(p.stat().st_size <= max(sizes) + 10 for p in written)
    assert "label-studio.json would be" in caplog.text and "written as 2 files label-studio.1.json ... label-studio.2.json" in caplog.text
    # under the limit again: one file, the numbered ones removed
    assert [p.name for p in LabelStudioExporter(LabelStudioConfig()).finish(split, sorted(results))] == ["label-studio.json"]
    assert task_files(split) == [split / "label-studio.json"] and not list(split.glob("label-studio.*.json"))
    with pytest.raises(ValueError, match="max_file_mb must be a positive number"):
        LabelStudioConfig(max_file_mb=0)


def test_the_category_table_travels_in_the_tasks_meta_and_eval_reads_it(ls_run, tmp_path, coco_sample, capsys):
    out, _, vocab = ls_run
    tasks = json.loads((out / "label-studio.json").read_text())
    expected = [{"id": c.id, "name": c.name, "supercategory": c.name, "isthing": int(c.isthing), "color": list(c.display_color)} for c in vocab.categories]
    assert all(t["meta"] == {"ovpanoptic": {"categories": expected}} for t in tasks)
    # a Label Studio export elsewhere (no table beside it): the QA command needs no --classes
    export = tmp_path / "export.json"
    export.write_text(json.dumps([{**t, "id": k} for k, t in enumerate(tasks, 1)]))
    capsys.readouterr()
    code = main(["eval", "--gt", str(export), "--gt-use", "predictions", "--pred", str(export), "--pred-use", "predictions", "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["all"]["pq"] == 1.0
    other = [{**tasks[0], "meta": {"ovpanoptic": {"categories": expected[:3]}}}, tasks[1]]
    export.write_text(json.dumps(other))
    assert main(["eval", "--gt", str(export), "--gt-use", "predictions", "--pred", str(export), "--pred-use", "predictions"]) == 2
    assert "tasks carry different category tables in meta.ovpanoptic" in capsys.readouterr().err


def test_push_to_a_server_that_is_not_label_studio_names_the_request(tmp_path, capsys) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from ovpanoptic.cli import main
    from ovpanoptic.formats.label_studio.push import one_line

    class NotLabelStudio(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Nope</h1>" + b"x" * 5000 + b"</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotLabelStudio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (tmp_path / "label-studio.json").write_text("[]")
        (tmp_path / "label-studio.xml").write_text("<View/>")
        url = f"http://127.0.0.1:{server.server_port}"
        assert main(["push", "label-studio", str(tmp_path), "--label-studio-url", url, "--label-studio-token", "t"]) == 2
        assert capsys.readouterr().err == (
            f"error: {url} does not look like Label Studio: GET /api/version answered 404 (an HTML page: 404 Not Found). "
            "Give Label Studio's address with --label-studio-url (e.g. http://127.0.0.1:8080, no path)\n"
        )
    finally:
        server.shutdown()
        server.server_close()
    assert one_line("") == "(no message)"
    assert one_line("<html><body><p>bad</p>\n<p>gateway</p></body></html>") == "an HTML page: bad gateway"
    assert one_line({"detail": "no"}) == '{"detail": "no"}' and len(one_line("y" * 900)) == 200


#: An image name with every character a URL must encode, and one Label Studio's query parser reads specially.
ODD_STEM = "riders & horses + c#1 100% 'é'"


def test_image_links_are_percent_encoded_and_round_trip_through_reader_push_and_eval(tmp_path, capsys):
    from urllib.parse import quote

    from ovpanoptic.formats.coco_panoptic import CocoPanopticConfig, CocoPanopticExporter
    from ovpanoptic.formats.label_studio import LabelStudioConfig, LabelStudioExporter, local_files_path
    from ovpanoptic.formats.label_studio.push import _local_files_url

    result = small_result()
    image = np.zeros((6, 8, 3), np.uint8)
    out = tmp_path / "out é"
    for exporter in (LabelStudioExporter(LabelStudioConfig()), CocoPanopticExporter(CocoPanopticConfig())):
        exporter.export(result, image, out, ODD_STEM)
        exporter.finish(out, [ODD_STEM])
    url = json.loads((out / "label-studio.json").read_text("utf-8"))[0]["data"]["image"]
    # As Label Studio's local-files storage writes it: quote(path), '/' kept.
    assert url == "/data/local-files/?d=riders%20%26%20horses%20%2B%20c%231%20100%25%20%27%C3%A9%27.jpg"
    assert url == "/data/local-files/?d=" + quote(f"{ODD_STEM}.jpg")
    assert local_files_path(url) == f"{ODD_STEM}.jpg"
    cats = [CategoryInfo(1, "car", True), CategoryInfo(2, "road", False)]
    assert read_label_studio(out / "label-studio.json", cats).annotations.names == (ODD_STEM,)
    # push puts the storage's subfolder before the decoded name and encodes the whole path once.
    pushed = _local_files_url(url, "my photos")
    assert pushed == "/data/local-files/?d=my%20photos/" + quote(f"{ODD_STEM}.jpg")
    assert local_files_path(pushed) == f"my photos/{ODD_STEM}.jpg"
    assert _local_files_url(pushed, "my photos") == pushed
    # A link an older tool wrote without encoding still names its whole file.
    assert local_files_path("/data/local-files/?d=photos/riders & horses c#1.jpg") == "photos/riders & horses c#1.jpg"
    # eval pairs the export's image with the COCO ground truth of the same name.
    assert main(["eval", "--gt", str(out / "panoptic.json"), "--pred", str(out / "label-studio.json"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["all"]["pq"] == 1.0


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("<View><Image name='image' value='$image'/><BrushLabels", "(line 1, column 43: unclosed token): the file may be truncated or damaged"),
        ("", "(line 1, column 1: no element found): the file is empty or cut off"),
    ],
)
def test_push_checks_the_labelling_config_before_connecting(tmp_path, capsys, config, problem) -> None:
    (tmp_path / "label-studio.json").write_text("[]")
    (tmp_path / "label-studio.xml").write_text(config)
    # Port 1 answers nothing: an error about the connection would mean the config was not checked first.
    assert main(["push", "label-studio", str(tmp_path), "--label-studio-url", "http://127.0.0.1:1", "--label-studio-token", "t"]) == 2
    assert capsys.readouterr().err == (
        f"error: labelling config {tmp_path / 'label-studio.xml'} is not well-formed XML {problem}; export it again\n"
    )
    (tmp_path / "label-studio.xml").write_text("<annotations/>")
    assert main(["push", "label-studio", str(tmp_path), "--label-studio-url", "http://127.0.0.1:1", "--label-studio-token", "t"]) == 2
    assert "has the root element <annotations>, not Label Studio's <View>" in capsys.readouterr().err
