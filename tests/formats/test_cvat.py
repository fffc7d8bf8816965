"""The ``cvat`` exporter and :func:`read_cvat`, checked with Datumaro's CVAT and COCO importers."""

from __future__ import annotations

import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.errors import ExportError, MissingDependencyError
from ovpanoptic.evaluation import EvaluationError, evaluate_annotations
from ovpanoptic.formats.coco_instances import CocoInstancesConfig, CocoInstancesExporter
from ovpanoptic.formats.coco_panoptic import CocoPanopticConfig, CocoPanopticExporter, read_coco_panoptic
from ovpanoptic.formats.common import CategoryInfo
from ovpanoptic.formats.cvat import CvatConfig, CvatExporter, mask_rle, read_cvat
from ovpanoptic.plugins import Registry
from ovpanoptic.testing import check_plugin
from ovpanoptic.types import Category, PanopticResult, Vocabulary

dm = pytest.importorskip("datumaro")

#: A class name with every character XML escapes.
ODD = 'a & <b> "c"'
VOCAB = Vocabulary((Category(1, "person", True), Category(2, ODD, True), Category(3, "grass", False)))
CATEGORIES = [CategoryInfo(c.id, c.name, c.isthing) for c in VOCAB.categories]


def tiny_result(vocabulary: Vocabulary = VOCAB) -> PanopticResult:
    """24 x 32: two persons (1, 2), one ODD thing (3) with a hole of grass, grass (4) below; rest void."""
    ids = np.zeros((24, 32), np.int32)
    ids[12:, :] = 4
    ids[2:8, 3:9] = 1  # its box starts with a mask pixel: the RLE starts with a 0 run
    ids[3:10, 12:15] = 2
    ids[5, 13] = 0
    ids[14:20, 20:30] = 3
    ids[15:17, 22:25] = 4
    return PanopticResult.from_map(ids, {1: (1, 0.9), 2: (1, 0.42), 3: (2, 0.777), 4: (3, 0.5)}, vocabulary)


def export(exporter, result: PanopticResult, out: Path, stems: list[str]) -> None:
    image = np.zeros((*result.image_size, 3), np.uint8)
    for stem in stems:
        exporter.export(result, image, out, stem)
    exporter.finish(out, stems)


def test_mask_rle_is_row_major_and_starts_with_background():
    crop = np.array([[1, 1, 0], [0, 1, 1]], bool)
    assert mask_rle(crop) == [0, 2, 2, 2]
    assert mask_rle(~crop) == [2, 2, 2]
    assert sum(mask_rle(np.zeros((3, 4), bool))) == 12


def test_cvat_xml_imports_in_datumaro_pixel_for_pixel(tmp_path):
    result = tiny_result()
    out = tmp_path / "out"
    export(CvatExporter(CvatConfig()), result, out, ["000001"])
    root = ET.parse(out / "cvat" / "annotations.xml").getroot()
    assert root.findtext("version") == "1.1"
    labels = root.findall("meta/task/labels/label")
    assert [label.findtext("name") for label in labels] == ["person", ODD, "grass"]
    for label, category in zip(labels, VOCAB.categories):
        assert label.findtext("color") == "#{:02x}{:02x}{:02x}".format(*category.display_color)
        assert label.findtext("type") == "mask"
        (attribute,) = label.findall("attributes/attribute")
        assert (attribute.findtext("name"), attribute.findtext("input_type"), attribute.findtext("values")) == ("score", "number", "0\n100\n1")
    (image,) = root.findall("image")
    assert image.attrib == {"id": "0", "name": "000001.jpg", "width": "32", "height": "24"}
    masks = image.findall("mask")
    assert [(m.get("source"), m.get("occluded"), m.get("z_order")) for m in masks] == [("auto", "0", "1")] * 3 + [("auto", "0", "0")]
    assert masks[0].get("rle").startswith("0, ")  # first box pixel is the mask's
    assert (masks[1].get("left"), masks[1].get("top"), masks[1].get("width"), masks[1].get("height")) == ("12", "3", "3", "7")
    text = (out / "cvat" / "annotations.xml").read_text("utf-8")
    assert 'label="a &amp; &lt;b&gt; &quot;c&quot;"' in text and "<name>a &amp; &lt;b&gt; \"c\"</name>" in text

    # The folder is CVAT's export with images, as written: Datumaro's CVAT importer takes it.
    assert sorted(p.relative_to(out / "cvat").as_posix() for p in (out / "cvat").rglob("*")) == ["annotations.xml", "images", "images/000001.jpg"]
    dataset = dm.Dataset.import_from(str(out / "cvat"), "cvat")
    names = dataset.categories()[dm.AnnotationType.label]
    (item,) = list(dataset)
    assert (item.id, item.media.size, item.media.data.shape) == ("000001", (24, 32), (24, 32, 3))
    assert len(item.annotations) == len(result.segments) == 4
    for annotation, segment in zip(item.annotations, result.segments):
        assert annotation.type == dm.AnnotationType.mask
        np.testing.assert_array_equal(annotation.image.astype(bool), result.panoptic_map == segment.id)
        assert names[annotation.label].name == result.category_of(segment).name
        assert annotation.attributes["score"] == round(100 * segment.score)
        assert annotation.z_order == (1 if segment.isthing else 0)


def test_coco_instances_import_in_datumaro_pixel_for_pixel(tmp_path):
    """Datumaro's ``coco_instances`` reads ``ROOT/annotations/instances_<subset>.json`` and needs a
    ``ROOT/images`` folder (the images themselves may be absent: sizes come from the JSON)."""
    result = tiny_result()
    out = tmp_path / "out"
    export(CocoInstancesExporter(CocoInstancesConfig()), result, out, ["000001"])
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    shutil.copy(out / "instances.json", root / "annotations" / "instances_default.json")
    dataset = dm.Dataset.import_from(str(root), "coco_instances")
    names = dataset.categories()[dm.AnnotationType.label]
    (item,) = list(dataset)
    assert (item.id, item.media.size) == ("000001", (24, 32))
    masks = [a for a in item.annotations if a.type == dm.AnnotationType.mask]
    things = [s for s in result.segments if s.isthing]
    assert len(masks) == len(things) == 3
    for segment in things:
        (mask,) = [m for m in masks if np.array_equal(m.image.astype(bool), result.panoptic_map == segment.id)]
        assert names[mask.label].name == result.category_of(segment).name
        assert mask.attributes["score"] == pytest.approx(segment.score)
        assert mask.attributes["is_crowd"] is False


def test_a_class_name_xml_cannot_hold_is_refused_before_anything_is_written(tmp_path):
    bad = Vocabulary((Category(1, "cat\uffff", True),))
    exporter = CvatExporter(CvatConfig())
    with pytest.raises(ExportError, match=r"class name 'cat\\uffff' \(category 1\): it contains the character U\+FFFF.*Rename the class"):
        exporter.check_output(tmp_path, bad)
    result = PanopticResult.from_map(np.ones((4, 4), np.int32), {1: (1, 0.5)}, bad)
    with pytest.raises(ExportError, match="U\\+FFFF"):
        exporter.export(result, np.zeros((4, 4, 3), np.uint8), tmp_path, "x")
    assert not any(tmp_path.rglob("*"))
    with pytest.raises(ExportError, match=r"image name 'a\\x01b.jpg'.*U\+0001.*Rename the image file"):
        exporter.export(tiny_result(), np.zeros((24, 32, 3), np.uint8), tmp_path, "a\x01b")


def test_finish_follows_stems_and_reports_a_missing_part(tmp_path):
    exporter = CvatExporter(CvatConfig(image_name="train/{stem}.png"))
    result = tiny_result()
    image = np.zeros((24, 32, 3), np.uint8)
    for stem in ("b", "a", "c"):
        exporter.export(result, image, tmp_path, stem)
    exporter.finish(tmp_path, ["b", "a"])
    assert sorted(p.name for p in (tmp_path / "cvat" / "images" / "train").iterdir()) == ["a.png", "b.png", "c.png"]
    with Image.open(tmp_path / "cvat" / "images" / "train" / "a.png") as written:  # lossless: the pixels as given
        assert (written.format, written.size) == ("PNG", (32, 24)) and not np.asarray(written).any()
    images = ET.parse(tmp_path / "cvat" / "annotations.xml").getroot().findall("image")
    assert [(i.get("id"), i.get("name")) for i in images] == [("0", "train/b.png"), ("1", "train/a.png")]
    exporter.finish(tmp_path, None)  # every part, by name
    images = ET.parse(tmp_path / "cvat" / "annotations.xml").getroot().findall("image")
    assert [i.get("name") for i in images] == ["train/a.png", "train/b.png", "train/c.png"]
    assert ET.parse(tmp_path / "cvat" / "annotations.xml").getroot().findtext("meta/task/size") == "3"
    (tmp_path / ".ovpanoptic" / "cvat.annotations.xml.parts" / "a.json").unlink()
    before = (tmp_path / "cvat" / "annotations.xml").read_bytes()
    with pytest.raises(ExportError, match=r"a\.json is missing: run the batch again to redo image 'a'"):
        exporter.finish(tmp_path, ["b", "a"])
    assert (tmp_path / "cvat" / "annotations.xml").read_bytes() == before
    exporter.export(result, image, tmp_path, "a")  # the resumed batch redoes it
    assert len(exporter.finish(tmp_path, ["b", "a"])) == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_another_vocabulary_is_refused(tmp_path):
    exporter = CvatExporter(CvatConfig())
    export(exporter, tiny_result(), tmp_path, ["x"])
    exporter.check_output(tmp_path, VOCAB)  # the same vocabulary may add images
    other = Vocabulary((Category(1, "person", True), Category(2, "dog", True), Category(3, "grass", False)))
    with pytest.raises(ExportError, match="holds results of another vocabulary .*Choose another output folder with -o"):
        exporter.check_output(tmp_path, other)
    shutil.rmtree(tmp_path / ".ovpanoptic")  # the XML alone still tells
    with pytest.raises(ExportError, match=r"annotations\.xml holds results of another vocabulary \(its labels \['a & <b> \"c\"'\] differ from \['dog'\]"):
        exporter.check_output(tmp_path, other)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_name": "{name}.jpg"}, "must contain the field {stem} and no other"),
        ({"image_name": "frame.jpg"}, "must contain the field {stem}"),
        ({"image_name": "../{stem}.jpg"}, "relative name"),
        ({"image_name": "{stem"}, "not a valid template"),
        ({"label_type": "polygon"}, "label_type must be one of mask, any"),
        ({"xml_name": "a/b.xml"}, "plain file or folder name"),
        ({"folder": "../cvat"}, "folder '../cvat' must be a plain file or folder name"),
        ({"image_name": "{stem}"}, r"image_name '\{stem\}' must end with an image extension .*\.jpg, \.jpeg, \.png.*or set images = false"),
    ],
)
def test_config_is_checked(options, message):
    with pytest.raises(ValueError, match=message):
        CvatConfig(**options)
    assert CvatConfig(image_name="{stem}", images=False).image_name == "{stem}"  # the XML alone: any name


def test_images_false_writes_the_xml_alone(tmp_path):
    export(CvatExporter(CvatConfig(images=False)), tiny_result(), tmp_path, ["000001"])
    assert sorted(p.name for p in (tmp_path / "cvat").iterdir()) == ["annotations.xml"]


def test_cvat_is_a_builtin_exporter_that_passes_the_kit(tmp_path):
    registry = Registry.create(entry_points=False, env={})
    assert registry.component("exporter", "cvat").plugin == "cvat"
    assert check_plugin(registry.pm.get_plugin("cvat"), tmp_path, name="cvat") == {"exporter": ["cvat"]}


def _coco_panoptic(result: PanopticResult, out: Path) -> Path:
    export(CocoPanopticExporter(CocoPanopticConfig()), result, out, ["000001"])
    return out / "panoptic.json"


def test_read_cvat_of_our_export_scores_pq_1(tmp_path):
    result = tiny_result()
    export(CvatExporter(CvatConfig()), result, tmp_path / "out", ["000001"])
    truth = read_coco_panoptic(_coco_panoptic(result, tmp_path / "coco"))
    read = read_cvat(tmp_path / "out", CATEGORIES)  # ovpanoptic's output folder: its cvat/ folder
    assert (read.format, read.names) == ("cvat", ("000001",))
    image = read.read("000001")
    assert sorted(s["area"] for s in image.segments) == sorted(s.area for s in result.segments)
    report = evaluate_annotations(truth, read).report
    for group in (report.all, report.things, report.stuff):
        assert (group.pq, group.sq, group.rq) == (1.0, 1.0, 1.0)
    assert (report.all.tp, report.all.fp, report.all.fn) == (4, 0, 0)
    # A job's export has <meta><job> where a task's has <meta><task>: read alike.
    job = tmp_path / "job.xml"
    job.write_text((tmp_path / "out" / "cvat" / "annotations.xml").read_text("utf-8").replace("task>", "job>"), "utf-8")
    np.testing.assert_array_equal(read_cvat(job, CATEGORIES).read("000001").panoptic_map, image.panoptic_map)


def test_oracle_pipeline_on_coco_round_trips_through_cvat(tmp_path):
    """Real COCO ground truth (50 segments, holes, 133 classes) -> ``cvat`` -> read_cvat: PQ 1."""
    from conftest import COCO_SAMPLE
    from formats.test_export_eval import oracle_config

    from ovpanoptic.imageio import read_image
    from ovpanoptic.pipeline import Pipeline

    if not COCO_SAMPLE.is_dir():
        pytest.skip("COCO sample fixture not found")
    pipe = Pipeline(oracle_config(COCO_SAMPLE, tmp_path, "detectron2"))
    vocabulary = pipe.vocabulary(name="coco")
    for path in sorted((COCO_SAMPLE / "images").glob("*.jpg")):
        image = read_image(path)
        pipe.export(pipe.segment(image, vocabulary), image, tmp_path / "out", path.stem, ["cvat"])
    read = read_cvat(tmp_path / "out", [CategoryInfo(c.id, c.name, c.isthing) for c in vocabulary.categories])
    assert read.names == ("000000142238", "000000439180")
    assert sum(len(read.read(name).segments) for name in read.names) == 18 + 32
    report = evaluate_annotations(read_coco_panoptic(COCO_SAMPLE / "panoptic.json", COCO_SAMPLE / "panoptic"), read).report
    assert (report.all.pq, report.things.pq, report.stuff.pq) == (1.0, 1.0, 1.0)
    assert (report.all.fp, report.all.fn) == (0, 0)  # 47 TP: the 3 crowd regions are not counted


def test_read_cvat_of_a_hand_edited_export(tmp_path):
    result = tiny_result()
    export(CvatExporter(CvatConfig()), result, tmp_path / "out", ["000001"])
    xml = tmp_path / "out" / "cvat" / "annotations.xml"
    tree = ET.parse(xml)
    image = tree.getroot().find("image")
    masks = image.findall("mask")
    image.remove(masks[1])  # the second person is deleted
    masks[2].set("label", "person")  # the ODD thing is relabelled person
    tree.write(xml, encoding="utf-8", xml_declaration=True)
    truth = read_coco_panoptic(_coco_panoptic(result, tmp_path / "coco"))
    agreement = evaluate_annotations(truth, read_cvat(xml, CATEGORIES))
    # person: the first matches exactly (TP, IoU 1); the second has no prediction (FN); the relabelled
    #   shape has no person to match (FP: its pixels are ODD's in the ground truth, not void):
    #   PQ = 1 / (1 + 0.5 * 1 + 0.5 * 1) = 0.5.
    # ODD: its only segment is unmatched (FN), no TP: PQ = 0.   grass: identical: PQ = 1.
    # All: (0.5 + 0 + 1) / 3 = 0.5; things: (0.5 + 0) / 2 = 0.25; stuff: 1.
    report = agreement.report
    assert (report.per_category[1].pq, report.per_category[2].pq, report.per_category[3].pq) == (0.5, 0.0, 1.0)
    assert (report.all.pq, report.things.pq, report.stuff.pq) == (0.5, 0.25, 1.0)
    assert (report.all.tp, report.all.fp, report.all.fn) == (2, 1, 2)
    (item,) = agreement.images
    assert (item.pq, item.changed) == (0.5, (ODD, "person"))


def test_read_cvat_paints_by_z_order_merges_stuff_and_fills_polygons(tmp_path):
    # 6 x 8. Painted in (z_order, file order): grass mask (z 0) over the whole image; a person mask
    # (z 0, later in the file) on rows 0-1; a person polygon (z 2) covering x 1..3, y 1..2, painted
    # last although it comes first in the file; a second grass polygon (z 1) on x 5..7, y 4..5 that
    # merges with the first grass into one segment; a person box (z 1) wholly under the polygon:
    # left without a pixel, it is no segment.
    full = "0, 48"
    xml = tmp_path / "annotations.xml"
    xml.write_text(
        f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version><meta><task><name>t</name><labels>
<label><name>Person</name></label><label><name>grass</name></label></labels></task></meta>
<image id="0" name="dir/img.v2.png" width="8" height="6">
  <polygon label="Person" occluded="0" points="1,1;4,1;4,3;1,3" z_order="2"/>
  <mask label="grass" rle="{full}" left="0" top="0" width="8" height="6" z_order="0"/>
  <mask label="Person" rle="0, 16" left="0" top="0" width="8" height="2" z_order="0"/>
  <polygon label="grass" points="5,4;8,4;8,6;5,6" z_order="1"/>
  <box label="Person" xtl="2" ytl="1" xbr="3" ybr="2" z_order="1"/>
  <polyline label="grass" points="0,0;3,3" z_order="3"/>
</image></annotations>
""",
        "utf-8",
    )
    read = read_cvat(xml, {c.id: c for c in CATEGORIES})
    assert read.names == ("img.v2",)
    image = read.read("img.v2")
    expected = np.full((6, 8), 1)  # grass (segment 1)
    expected[0:2, :] = 2  # the person mask
    expected[1:3, 1:4] = 4  # the polygon person, over the box person (3)
    np.testing.assert_array_equal(image.panoptic_map, expected)
    assert image.panoptic_map.dtype == np.int64
    assert list(image.segments) == [
        {"id": 1, "category_id": 3, "iscrowd": 0, "area": 48 - 16 - 3},
        {"id": 2, "category_id": 1, "iscrowd": 0, "area": 16 - 3},
        {"id": 4, "category_id": 1, "iscrowd": 0, "area": 6},
    ]


def test_read_cvat_refuses_unknown_labels_and_missing_files(tmp_path):
    export(CvatExporter(CvatConfig()), tiny_result(), tmp_path, ["x"])
    with pytest.raises(EvaluationError, match=r"label\(s\) 'a & <b> \"c\"' are not among the categories \('person', 'grass'\).*--classes or --vocabulary"):
        read_cvat(tmp_path, [CATEGORIES[0], CATEGORIES[2]])
    with pytest.raises(EvaluationError, match="has no annotations.xml"):
        read_cvat(tmp_path / ".ovpanoptic", CATEGORIES)
    with pytest.raises(EvaluationError, match="does not exist"):
        read_cvat(tmp_path / "nothing.xml", CATEGORIES)
    (tmp_path / "bad.xml").write_text("<annotations><image", "utf-8")
    with pytest.raises(EvaluationError) as caught:
        read_cvat(tmp_path / "bad.xml", CATEGORIES)
    assert str(caught.value) == (
        f"ground-truth CVAT export {tmp_path / 'bad.xml'} is not well-formed XML (line 1, column 14: unclosed token): the "
        "file may be truncated or damaged; export it again"
    )


def test_read_cvat_without_datumaro_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datumaro", None)
    with pytest.raises(MissingDependencyError, match=r"pip install datumaro, or pip install 'ovpanoptic\[labelling\]'"):
        read_cvat(tmp_path, CATEGORIES)


def test_parts_are_json_with_the_segments_boxes(tmp_path):
    export(CvatExporter(CvatConfig()), tiny_result(), tmp_path, ["x"])
    part = json.loads((tmp_path / ".ovpanoptic" / "cvat.annotations.xml.parts" / "x.json").read_text())
    assert (part["name"], part["height"], part["width"]) == ("x.jpg", 24, 32)
    assert [(s["category_id"], s["score"], s["left"], s["top"], s["width"], s["height"]) for s in part["shapes"]] == [
        (1, 90, 3, 2, 6, 6), (1, 42, 12, 3, 3, 7), (2, 78, 20, 14, 10, 6), (3, 50, 0, 12, 32, 12),
    ]


def test_read_cvat_reads_a_project_export_s_subsets_and_names_labels_outside_meta(tmp_path):
    result = tiny_result()
    export(CvatExporter(CvatConfig()), result, tmp_path / "out", ["000001"])
    xml = (tmp_path / "out" / "cvat" / "annotations.xml").read_text("utf-8")
    project = tmp_path / "project.xml"
    project.write_text(xml.replace("<image ", '<image subset="Train" task_id="3" '), "utf-8")
    expected = read_cvat(tmp_path / "out", CATEGORIES).read("000001").panoptic_map
    read = read_cvat(project, CATEGORIES)
    assert read.names == ("000001",)
    np.testing.assert_array_equal(read.read("000001").panoptic_map, expected)
    stranger = tmp_path / "stranger.xml"
    stranger.write_text(xml.replace('label="grass"', 'label="zzz"'), "utf-8")
    with pytest.raises(EvaluationError, match=r"the CVAT label\(s\) 'zzz' are not among the categories"):
        read_cvat(stranger, CATEGORIES)


def test_read_cvat_refuses_a_mask_whose_rle_does_not_cover_its_box(tmp_path):
    export(CvatExporter(CvatConfig()), tiny_result(), tmp_path / "out", ["000001"])
    xml = (tmp_path / "out" / "cvat" / "annotations.xml").read_text("utf-8")
    damaged = tmp_path / "damaged.xml"
    damaged.write_text(re.sub(r'rle="[^"]*"', 'rle="1, 2, 3"', xml, count=1), "utf-8")
    with pytest.raises(EvaluationError, match=r"mask's rle covers 6 pixels, not its box's \d+ x \d+ = \d+: the mask is damaged"):
        read_cvat(damaged, CATEGORIES)


ENTITY_REFUSED = (
    "CVAT never writes them, and ovpanoptic does not expand them (an entity can expand into gigabytes): replace each "
    "&NAME; by its text and remove the <!DOCTYPE ...> block, or export the annotations from CVAT again"
)


@pytest.mark.parametrize("dtd, use", [
    ('<!ENTITY who "car">', "&who;"),  # harmless, still an entity
    ('<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
     '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">', "&e;"),  # laughs
    ('<!ENTITY ext SYSTEM "file:///etc/passwd">', "&ext;"),  # external
])
def test_read_cvat_refuses_xml_entities_with_a_message(tmp_path, dtd, use):
    export(CvatExporter(CvatConfig()), tiny_result(), tmp_path / "out", ["000001"])
    xml = (tmp_path / "out" / "cvat" / "annotations.xml").read_text("utf-8")
    head, _, body = xml.partition("?>")
    hostile = tmp_path / "entity.xml"
    body = body.replace("<version>1.1</version>", f"<version>1.1</version><note>{use}</note>", 1)
    hostile.write_text(f"{head}?>\n<!DOCTYPE annotations [{dtd}]>{body}", "utf-8")
    with pytest.raises(EvaluationError) as caught:
        read_cvat(hostile, CATEGORIES, role="prediction")
    message = str(caught.value)
    assert message.startswith(f"prediction CVAT export {hostile} declares an XML entity") and message.endswith(ENTITY_REFUSED)
    assert "EntitiesForbidden" not in message and "Forbidden(" not in message


def test_read_cvat_refuses_an_image_over_the_pixel_limit_before_datumaro_reads_it(tmp_path):
    export(CvatExporter(CvatConfig()), tiny_result(), tmp_path / "out", ["000001"])
    xml = tmp_path / "out" / "cvat" / "annotations.xml"
    width = re.search(r'<image [^>]*width="(\d+)"', xml.read_text("utf-8")).group(1)
    height = re.search(r'<image [^>]*height="(\d+)"', xml.read_text("utf-8")).group(1)
    with pytest.raises(EvaluationError, match=rf"^ground-truth CVAT export {re.escape(str(xml))}: image '000001\.\w+' declares an image of {width} x {height} pixels"):
        read_cvat(xml, CATEGORIES, max_pixels=int(width) * int(height) - 1)
    assert read_cvat(xml, CATEGORIES, max_pixels=int(width) * int(height)).size("000001") == (int(width), int(height))


def test_eval_reads_a_folder_of_datumaro_named_cvat_files(tmp_path, capsys):
    """Datumaro writes CVAT XML as ``<subset>.xml`` (``default.xml``); CVAT projects as ``val.xml``
    etc.: ``ovpanoptic eval`` takes their folder (the one CVAT XML beside it or in ``annotations/``)."""
    from ovpanoptic.cli import main

    out = tmp_path / "out"
    export(CvatExporter(CvatConfig()), tiny_result(), out, ["000001"])
    datumaro_out = tmp_path / "datumaro"
    dm.Dataset.import_from(str(out / "cvat"), "cvat").export(str(datumaro_out), "cvat", save_media=True)
    assert sorted(p.name for p in datumaro_out.glob("*.xml")) == ["annotations.xml"]
    (datumaro_out / "annotations.xml").rename(datumaro_out / "default.xml")  # a subset's file, as Datumaro names it
    (datumaro_out / "label-studio.xml").write_text("<View><Image name='image' value='$image'/></View>", "utf-8")  # not CVAT's

    gt = tmp_path / "gt"  # the same segments as COCO panoptic: ids and the thing/stuff split
    export(CocoPanopticExporter(CocoPanopticConfig()), tiny_result(), gt, ["000001"])

    def scored(pred: Path) -> tuple[int, dict]:
        capsys.readouterr()
        code = main(["eval", "--gt", str(gt), "--pred", str(pred), "--json"])
        captured = capsys.readouterr()
        return code, (json.loads(captured.out) if code == 0 else {"error": captured.err})

    code, report = scored(datumaro_out)
    assert code == 0, report
    assert (report["all"]["pq"], report["n_images"]) == (1.0, 1)
    (datumaro_out / "annotations").mkdir()
    (datumaro_out / "default.xml").rename(datumaro_out / "annotations" / "val.xml")
    code, report = scored(datumaro_out)
    assert code == 0 and report["all"]["pq"] == 1.0, report
    shutil.copy(datumaro_out / "annotations" / "val.xml", datumaro_out / "annotations" / "train.xml")
    code, report = scored(datumaro_out)
    assert code == 2
    assert "holds 2 CVAT XML files (train.xml, val.xml): pass the file to read" in report["error"]


def test_segment_s_cvat_folder_imports_in_datumaro_as_written_beside_label_studio(tmp_path, capsys):
    """``ovpanoptic segment --format cvat --format label-studio``: ``OUTDIR/cvat`` is CVAT's export
    with images (``annotations.xml`` + ``images/``, no other XML beside it). Datumaro imports it as
    written, image for image and mask for mask equal to the COCO panoptic export of the same run, and
    ``ovpanoptic eval`` reads the output folder as the CVAT export."""
    pytest.importorskip("label_studio_sdk")
    from conftest import COCO_SAMPLE
    from formats.test_export_eval import oracle_config

    from ovpanoptic.cli import main

    if not COCO_SAMPLE.is_dir():
        pytest.skip("COCO sample fixture not found")
    out = tmp_path / "out"
    args = ["segment", str(COCO_SAMPLE / "images"), "--vocabulary", "coco", "--config", str(oracle_config(COCO_SAMPLE, tmp_path, "detectron2")),
            "-o", str(out), "--format", "cvat", "--format", "label-studio", "--format", "coco-panoptic", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    stems = ["000000142238", "000000439180"]
    assert sorted(p.name for p in out.glob("*.xml")) == ["label-studio.xml"]  # Label Studio's config stays beside its tasks
    assert sorted(p.relative_to(out / "cvat").as_posix() for p in (out / "cvat").rglob("*")) == [
        "annotations.xml", "images", *(f"images/{s}.jpg" for s in stems)
    ]
    dataset = dm.Dataset.import_from(str(out / "cvat"), "cvat")
    names = dataset.categories()[dm.AnnotationType.label]
    ours = read_coco_panoptic(out / "panoptic.json")
    items = {item.id: item for item in dataset}
    assert sorted(items) == stems
    for stem in stems:
        item, truth = items[stem], ours.read(stem)
        with Image.open(COCO_SAMPLE / "images" / f"{stem}.jpg") as source:
            assert item.media.size == (source.height, source.width) == truth.panoptic_map.shape
        assert item.media.data.shape == (*truth.panoptic_map.shape, 3)  # the image itself, decoded
        masks = [a for a in item.annotations if a.type == dm.AnnotationType.mask]
        assert len(masks) == len(item.annotations) == len(truth.segments)
        for mask, segment in zip(masks, truth.segments):
            np.testing.assert_array_equal(mask.image.astype(bool), truth.panoptic_map == segment["id"])
            assert names[mask.label].name == ours.categories[segment["category_id"]].name
    # eval takes the output folder's CVAT export (its classes from ovpanoptic's own table)
    capsys.readouterr()
    assert main(["eval", "--gt", str(out / "panoptic.json"), "--pred", str(out / "cvat"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["all"]["pq"] == 1.0
