"""Cityscapes: the ``cityscapes`` vocabulary, the ``cityscapes`` / ``cityscapes-panoptic`` exporters
and the readers, checked against cityscapesscripts' own conversion (``convert2panoptic``) and its own
panoptic evaluation (``evaluatePanoptic``)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.config import build_dataclass
from ovpanoptic.errors import ConfigError, ExportError, MissingDependencyError
from ovpanoptic.evaluation import (
    EvaluationError,
    evaluate_annotations,
    read_cityscapes,
    read_cityscapes_panoptic,
)
from ovpanoptic.imageio import read_image
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import check_exporter, registry_with
from ovpanoptic.types import Category, PanopticResult, Vocabulary

needs_cityscapesscripts = pytest.mark.skipif(
    importlib.util.find_spec("cityscapesscripts") is None, reason="cityscapesscripts (the labelling extra) is not installed"
)

EVAL_CLASSES = [
    (7, "road"), (8, "sidewalk"), (11, "building"), (12, "wall"), (13, "fence"), (17, "pole"),
    (19, "traffic light"), (20, "traffic sign"), (21, "vegetation"), (22, "terrain"), (23, "sky"),
    (24, "person"), (25, "rider"), (26, "car"), (27, "truck"), (28, "bus"), (31, "train"),
    (32, "motorcycle"), (33, "bicycle"),
]
THINGS = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
H, W = 64, 128


def quiet(fn, *args):
    """Call a cityscapesscripts function that prints progress; return its result."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def convert2panoptic(gtfine: Path, out: Path, split: str = "val") -> Path:
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic as convert

    out.mkdir(parents=True, exist_ok=True)
    quiet(convert, str(gtfine), str(out), False, [split])
    return out / f"cityscapes_panoptic_{split}.json"


def cityscapes_pq(gt_json: Path, pred_json: Path, tmp_path: Path) -> dict:
    """cityscapesscripts' own panoptic evaluation (its main function, ``evaluatePanoptic``)."""
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    return quiet(
        evaluatePanoptic, str(gt_json), str(gt_json.with_suffix("")), str(pred_json), str(pred_json.with_suffix("")),
        str(tmp_path / "results.json"),
    )


def street_instance_ids() -> np.ndarray:
    """A 64 x 128 Cityscapes instanceIds image: sky, road, two cars, a person, 16 void pixels."""
    ids = np.full((H, W), 23, np.uint16)  # sky
    ids[24:] = 7  # road
    ids[40:56, 10:30] = 26000  # car 0
    ids[40:56, 50:70] = 26001  # car 1
    ids[20:60, 100:110] = 24000  # person 0
    ids[:4, :4] = 0  # unlabeled
    return ids


def town_instance_ids() -> np.ndarray:
    """Building, sidewalk, road, a car and a bicycle."""
    ids = np.full((H, W), 11, np.uint16)
    ids[32:48] = 8
    ids[48:] = 7
    ids[44:60, 20:50] = 26000
    ids[36:56, 80:95] = 33000
    return ids


GROUND_TRUTH = {"frankfurt_000000_000001": street_instance_ids(), "lindau_000001_000002": town_instance_ids()}


def result_from_instance_ids(ids: np.ndarray, vocabulary: Vocabulary) -> PanopticResult:
    """A PanopticResult whose segment i is the i-th instanceIds value (label id = category id)."""
    values = [int(v) for v in np.unique(ids) if v]
    pm = np.zeros(ids.shape, np.int32)
    labels = {}
    for sid, value in enumerate(values, start=1):
        pm[ids == value] = sid
        labels[sid] = (value // 1000 if value >= 1000 else value, 1.0)
    return PanopticResult.from_map(pm, labels, vocabulary)


def png(path: Path) -> np.ndarray:
    with Image.open(path) as handle:
        return np.asarray(handle)


def write_gtfine(root: Path, instance_ids: dict[str, np.ndarray], split: str = "val") -> Path:
    """Cityscapes' gtFine layout of instanceIds (and labelIds) arrays, as json2instanceImg writes them."""
    for name, ids in instance_ids.items():
        folder = root / "gtFine" / split / name.split("_")[0]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids.astype(np.uint16)).save(folder / f"{name}_gtFine_instanceIds.png")
        labels = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8)
        Image.fromarray(labels).save(folder / f"{name}_gtFine_labelIds.png")
    return root / "gtFine"


@pytest.fixture(scope="module")
def cityscapes_vocab() -> Vocabulary:
    return registry_with().vocabulary("cityscapes")


def exporter(name: str, **options):
    from ovpanoptic.formats.cityscapes import CityscapesConfig, CityscapesExporter, CityscapesPanopticExporter

    config = build_dataclass(CityscapesConfig, options, f"exporter.{name}")
    return (CityscapesExporter if name == "cityscapes" else CityscapesPanopticExporter)(config)


# -- the vocabulary ---------------------------------------------------------------------------


def test_cityscapes_vocabulary_is_the_19_evaluation_classes_with_label_ids(cityscapes_vocab):
    v = cityscapes_vocab
    assert v.name == "cityscapes" and len(v) == 19
    assert [(c.id, c.name) for c in v.categories] == EVAL_CLASSES
    assert [c.name for c in v.things] == THINGS
    assert v.by_id(7).color == (128, 64, 128) and v.by_id(26).color == (0, 0, 142) and v.by_id(33).color == (119, 11, 32)
    assert "motorbike" in v.by_id(32).synonyms and "trees" in v.by_id(21).synonyms and "pedestrian" in v.by_id(24).synonyms
    assert all(c.synonyms and c.description for c in v.categories)
    source = json.loads((Path(__file__).parents[2] / "ovpanoptic/data/vocabularies/cityscapes.json").read_text())["source"]
    assert "cityscapesscripts/helpers/labels.py" in source


@needs_cityscapesscripts
def test_cityscapes_vocabulary_agrees_with_cityscapesscripts_labels(cityscapes_vocab):
    from cityscapesscripts.helpers.labels import labels

    official = [(l.id, l.name, l.hasInstances, l.color) for l in labels if not l.ignoreInEval]
    assert [(c.id, c.name, c.isthing, c.color) for c in cityscapes_vocab.categories] == official


# -- the gtFine exporter ----------------------------------------------------------------------


@needs_cityscapesscripts
def test_label_and_instance_ids_of_a_hand_built_result(cityscapes_vocab, tmp_path):
    pm = np.zeros((H, W), np.int32)
    pm[:24], pm[24:] = 5, 1  # sky, road
    pm[40:56, 50:70] = 2  # the second car by position, but the first by segment id: instance 0
    pm[40:56, 10:30] = 3
    pm[20:60, 100:110] = 4  # person
    pm[:4, :4] = 0  # void
    result = PanopticResult.from_map(pm, {1: (7, 0.9), 2: (26, 0.8), 3: (26, 0.7), 4: (24, 0.6), 5: (23, 0.9)}, cityscapes_vocab)
    paths = exporter("cityscapes").export(result, np.zeros((H, W, 3), np.uint8), tmp_path, "frankfurt_000000_000294_leftImg8bit")
    below = Path("gtFine") / "val" / "frankfurt"  # one kind of file per folder
    assert paths == [
        tmp_path / "labelIds" / below / "frankfurt_000000_000294_gtFine_labelIds.png",
        tmp_path / "instanceIds" / below / "frankfurt_000000_000294_gtFine_instanceIds.png",
    ]
    with Image.open(paths[1]) as handle:
        assert handle.mode == "I;16"  # 16-bit grayscale, as Cityscapes stores instanceIds
    instance, label = png(paths[1]), png(paths[0])
    assert instance.dtype == np.uint16 and label.dtype == np.uint8
    expected = np.full((H, W), 23, np.uint16)
    expected[24:] = 7
    expected[40:56, 50:70] = 26000
    expected[40:56, 10:30] = 26001
    expected[20:60, 100:110] = 24000
    expected[:4, :4] = 0
    np.testing.assert_array_equal(instance, expected)
    np.testing.assert_array_equal(label, np.where(expected >= 1000, expected // 1000, expected))
    assert sorted(np.unique(label).tolist()) == [0, 7, 23, 24, 26]


@needs_cityscapesscripts
def test_folders_come_from_the_name_or_the_options(cityscapes_vocab, tmp_path):
    result = PanopticResult.from_map(np.ones((4, 6), np.int32), {1: (7, 1.0)}, cityscapes_vocab)
    image = np.zeros((4, 6, 3), np.uint8)
    paths = exporter("cityscapes").export(result, image, tmp_path, "dashcam-0001")
    assert paths[0] == tmp_path / "labelIds/gtFine/val/ovpanoptic/dashcam-0001_gtFine_labelIds.png"
    paths = exporter("cityscapes", split="test", city="munich").export(result, image, tmp_path, "bonn_000012_000019")
    assert paths[1] == tmp_path / "instanceIds/gtFine/test/bonn/bonn_000012_000019_gtFine_instanceIds.png"
    paths = exporter("cityscapes", city="munich").export(result, image, tmp_path, "frame_1_2")
    assert paths[1] == tmp_path / "instanceIds/gtFine/val/munich/frame_1_2_gtFine_instanceIds.png"
    check_exporter(exporter("cityscapes"), result, image, tmp_path / "kit")
    check_exporter(exporter("cityscapes-panoptic"), result, image, tmp_path / "kit")
    with pytest.raises(ConfigError, match=r"invalid \[exporter.cityscapes\]: city '../x' must be a plain file or folder name"):
        exporter("cityscapes", city="../x")


# -- mapping a vocabulary to Cityscapes labels ------------------------------------------------

MIXED = Vocabulary(
    (
        Category(1, "Automobile", True, ("Car",)),  # a synonym is a Cityscapes label name (any case)
        Category(2, "lorry", True),  # label_ids
        Category(3, "traffic light", True),  # a thing, but Cityscapes' traffic light has no instances
        Category(4, "crowd", False, ("person",)),  # stuff, but Cityscapes' person has instances
        Category(5, "dog", True),
        Category(6, "tree canopy", False),
    ),
    name="street-test",
)


def mixed_result() -> PanopticResult:
    pm = np.zeros((8, 12), np.int32)
    pm[0:2, 0:3], pm[0:2, 4:7] = 1, 2  # two automobiles
    pm[3:5, 0:3] = 3  # a lorry
    pm[3:5, 4:6], pm[3:5, 7:9] = 4, 5  # two traffic lights
    pm[6:8, 0:6] = 6  # crowd (stuff)
    pm[6:8, 7:9] = 7  # a dog
    pm[0:2, 9:12] = 8  # tree canopy
    labels = {1: (1, 0.9), 2: (1, 0.9), 3: (2, 0.9), 4: (3, 0.9), 5: (3, 0.9), 6: (4, 0.9), 7: (5, 0.9), 8: (6, 0.9)}
    return PanopticResult.from_map(pm, labels, MIXED)


UNMAPPED = (
    "the cityscapes exporter cannot write 2 class(es) of vocabulary 'street-test', whose names are no Cityscapes "
    "label: 'dog', 'tree canopy'. Give each a Cityscapes label id or name: [exporter.cityscapes] label_ids = "
    "{\"dog\" = ID} (or --set 'exporter.cityscapes.label_ids={\"dog\" = ID}'), or write them as unlabeled (0) with "
    'unmapped = "void"'
)


@needs_cityscapesscripts
def test_unmapped_classes_are_refused_by_name_before_anything_is_written(tmp_path):
    cs = exporter("cityscapes", label_ids={"lorry": 27})
    with pytest.raises(ExportError) as refused:
        cs.check_output(tmp_path, MIXED)
    assert str(refused.value) == UNMAPPED
    with pytest.raises(ExportError, match="'dog', 'tree canopy'"):
        cs.export(mixed_result(), np.zeros((8, 12, 3), np.uint8), tmp_path, "x")
    panoptic = exporter("cityscapes-panoptic", label_ids={"lorry": 27})
    with pytest.raises(ExportError) as refused:
        panoptic.check_output(tmp_path, MIXED)
    assert str(refused.value) == UNMAPPED.replace("exporter.cityscapes]", "exporter.cityscapes-panoptic]").replace(
        "the cityscapes exporter", "the cityscapes-panoptic exporter").replace("'exporter.cityscapes.", "'exporter.cityscapes-panoptic.")
    assert list(tmp_path.rglob("*")) == []


@needs_cityscapesscripts
def test_a_batch_with_unmapped_classes_is_refused_before_any_image_is_written(tmp_path, monkeypatch):
    """The local engine calls check_output before a batch into an existing folder (no image is
    even segmented); into a new folder it skips that check and export() refuses the first image.
    Either way nothing is written."""
    from ovpanoptic.engines.local import run_local
    from ovpanoptic.testing import FakeComponentsPlugin

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((8, 12, 3), 90, np.uint8)).save(images / "a.png")
    config = tmp_path / "fake.toml"
    config.write_text(
        '[pipeline]\nproposal_generator = "tiles"\nclassifier = "cycling"\nfuser = "paint"\ndevice = "cpu"\n'
        "[exporter.cityscapes]\nlabel_ids = { lorry = 27 }\n"
    )
    pipe = Pipeline(config, registry=registry_with(FakeComponentsPlugin()))
    pipe.build_components(["cityscapes"])
    refused = r"^the cityscapes exporter cannot write 2 class\(es\) of vocabulary 'street-test', .*: 'dog', 'tree canopy'\."
    existing = tmp_path / "existing"
    existing.mkdir()
    segment = pipe.segment
    with monkeypatch.context() as patch:
        patch.setattr(pipe, "segment", lambda *a, **k: pytest.fail("an image was segmented before check_output refused"))
        with pytest.raises(ExportError, match=refused):
            run_local(pipe, MIXED, [images / "a.png"], existing, ["cityscapes"])
    assert list(existing.rglob("*")) == []
    assert pipe.segment == segment
    new = tmp_path / "new"
    with pytest.raises(ExportError, match=refused):
        run_local(pipe, MIXED, [images / "a.png"], new, ["cityscapes"])
    assert not new.exists() or list(new.rglob("*")) == []


@needs_cityscapesscripts
def test_names_label_ids_and_thing_stuff_mismatches(tmp_path):
    cs = exporter("cityscapes", label_ids={"LORRY": "truck", "tree canopy": 21}, unmapped="void")
    assert cs.label_map(MIXED) == {1: 26, 2: 27, 3: 19, 4: 24, 5: 0, 6: 21}
    ids = png(cs.export(mixed_result(), np.zeros((8, 12, 3), np.uint8), tmp_path, "x")[1])
    assert ids[0, 0] == 26000 and ids[0, 4] == 26001  # automobiles: car instances
    assert ids[3, 0] == 27000  # the lorry: a truck instance
    assert ids[3, 4] == ids[3, 7] == 19  # traffic lights: one label, their instances merge
    assert ids[6, 0] == 24  # the stuff "crowd": a person group (crowd)
    assert ids[6, 7] == 0  # the dog: unlabeled
    assert ids[0, 10] == 21  # tree canopy: vegetation
    assert ids[2, 0] == 0  # void
    # cityscapesscripts' panoptic conversion reads the person group as a crowd segment.
    out = tmp_path / "panoptic"
    panoptic = exporter("cityscapes-panoptic", label_ids={"lorry": 27, "tree canopy": "Vegetation"}, unmapped="void")
    panoptic.export(mixed_result(), np.zeros((8, 12, 3), np.uint8), out, "x")
    panoptic.finish(out, ["x"])
    segments = json.loads((out / "cityscapes_panoptic_val.json").read_text())["annotations"][0]["segments_info"]
    assert [(s["id"], s["category_id"], s["iscrowd"], s["area"]) for s in segments] == [
        (19, 19, 0, 8), (21, 21, 0, 6), (24, 24, 1, 12), (26000, 26, 0, 6), (26001, 26, 0, 6), (27000, 27, 0, 6),
    ]


@needs_cityscapesscripts
def test_bad_label_ids_and_options_are_config_errors():
    with pytest.raises(ConfigError, match=r"^\[exporter.cityscapes\] label_ids: 'lorry' = 99 is not a Cityscapes label; use a label id or name of cityscapesscripts' labels.py: 0 unlabeled, 1 ego vehicle, .*, 33 bicycle$"):
        exporter("cityscapes", label_ids={"lorry": 99})
    with pytest.raises(ConfigError, match=r"'plate' = 'license plate' is not a Cityscapes label"):  # id -1: no pixel value
        exporter("cityscapes", label_ids={"plate": "license plate"})
    with pytest.raises(ConfigError, match=r"label_ids: 'lorry' = True must be a Cityscapes label id"):
        exporter("cityscapes", label_ids={"lorry": True})
    with pytest.raises(ConfigError, match=r"exporter.cityscapes.unmapped: 'ignore' is not one of 'error', 'void'"):
        exporter("cityscapes", unmapped="ignore")


@needs_cityscapesscripts
def test_more_than_1000_instances_of_a_label_are_refused(cityscapes_vocab, tmp_path):
    pm = np.arange(1, 1002, dtype=np.int32).reshape(1, 1001)
    result = PanopticResult.from_map(pm, {i: (26, 1.0) for i in range(1, 1002)}, cityscapes_vocab)
    with pytest.raises(ExportError, match=r"^frankfurt_000000_000001: more than 1000 instances of the Cityscapes label 'car'"):
        exporter("cityscapes").export(result, np.zeros((1, 1001, 3), np.uint8), tmp_path, "frankfurt_000000_000001")


def test_missing_cityscapesscripts_says_what_to_install(monkeypatch, tmp_path):
    import sys

    for name in [m for m in sys.modules if m.startswith("cityscapesscripts")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cityscapesscripts", None)
    with pytest.raises(MissingDependencyError, match=r"the cityscapes exporter needs the package 'cityscapesscripts', which is not installed: pip install cityscapesscripts \(or pip install 'ovpanoptic\[labelling\]'\)"):
        exporter("cityscapes")
    (tmp_path / "gtFine").mkdir()
    (tmp_path / "gtFine" / "a_gtFine_instanceIds.png").write_bytes(b"")
    with pytest.raises(MissingDependencyError, match=r"^reading a Cityscapes gtFine folder needs cityscapesscripts \(.*\): pip install cityscapesscripts \(or pip install 'ovpanoptic\[labelling\]'\)$"):
        read_cityscapes(tmp_path / "gtFine")


# -- the panoptic exporter: finish() --------------------------------------------------------------


@needs_cityscapesscripts
def test_finish_assembles_the_parts_of_the_given_stems(cityscapes_vocab, tmp_path):
    panoptic = exporter("cityscapes-panoptic")
    for name, ids in GROUND_TRUTH.items():
        result = result_from_instance_ids(ids, cityscapes_vocab)
        written = panoptic.export(result, np.zeros((H, W, 3), np.uint8), tmp_path, f"{name}_leftImg8bit")
        assert written == [tmp_path / ".ovpanoptic/cityscapes-panoptic.parts" / f"{name}_gtFine_instanceIds.png"]
    assert not (tmp_path / "cityscapes_panoptic_val.json").exists()
    written = panoptic.finish(tmp_path, ["lindau_000001_000002_leftImg8bit"])
    assert written == [tmp_path / "cityscapes_panoptic_val/lindau_000001_000002_gtFine_panoptic.png", tmp_path / "cityscapes_panoptic_val.json"]
    data = json.loads(written[-1].read_text())
    assert [i["id"] for i in data["images"]] == ["lindau_000001_000002"]
    data = json.loads(panoptic.finish(tmp_path)[-1].read_text())  # None: every part, in path order
    assert [(i["id"], i["file_name"]) for i in data["images"]] == [
        ("frankfurt_000000_000001", "frankfurt_000000_000001_gtFine_leftImg8bit.png"),  # convert2panoptic's naming
        ("lindau_000001_000002", "lindau_000001_000002_gtFine_leftImg8bit.png"),
    ]
    assert [(c["id"], c["name"], c["isthing"]) for c in data["categories"]] == [
        (cid, name, int(name in THINGS)) for cid, name in EVAL_CLASSES
    ]
    assert sorted(p.name for p in (tmp_path / ".ovpanoptic").iterdir()) == ["cityscapes-panoptic.parts"]  # no staging left
    with pytest.raises(ExportError, match=r"cityscapes-panoptic.parts/bonn_000000_000001_gtFine_instanceIds.png is missing: run the batch again to redo image 'bonn_000000_000001'"):
        panoptic.finish(tmp_path, ["bonn_000000_000001"])
    assert panoptic.finish(tmp_path / "empty", []) == []


# -- oracle pipeline on Cityscapes ground truth, scored by cityscapesscripts -----------------------


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory, cityscapes_vocab):
    """Cityscapes ground truth (gtFine + its convert2panoptic form), the images, and the oracle
    pipeline's ``cityscapes`` and ``cityscapes-panoptic`` exports of them."""
    if importlib.util.find_spec("cityscapesscripts") is None:
        pytest.skip("cityscapesscripts is not installed")
    from cityscapesscripts.helpers.labels import id2label

    tmp = tmp_path_factory.mktemp("cityscapes")
    gt_json = convert2panoptic(write_gtfine(tmp / "gt", GROUND_TRUTH), tmp / "gt" / "panoptic")
    images = tmp / "leftImg8bit"
    images.mkdir()
    for name, ids in GROUND_TRUTH.items():
        label = np.where(ids >= 1000, ids // 1000, ids)
        rgb = np.array([id2label[int(v)].color for v in label.ravel()], np.uint8).reshape(H, W, 3)
        rgb[ids % 1000 == 1] += 20  # the second instance of a class looks a little different
        Image.fromarray(rgb).save(images / f"{name}_leftImg8bit.png")
    # The oracle reads COCO-panoptic ground truth: the converted JSON, pointing at the images.
    data = json.loads(gt_json.read_text())
    for image in data["images"]:
        image["file_name"] = f"{image['id']}_leftImg8bit.png"
    oracle_json = tmp / "oracle.json"
    oracle_json.write_text(json.dumps(data))
    gt = f'gt_json = "{oracle_json}"\ngt_dir = "{gt_json.with_suffix("")}"\nimages_dir = "{images}"\n'
    config = tmp / "oracle.toml"
    config.write_text(
        '[pipeline]\nproposal_generator = "oracle"\nclassifier = "oracle"\nfuser = "maskformer"\n'
        'exporters = ["cityscapes", "cityscapes-panoptic"]\nmax_side = 0\ndevice = "cpu"\n'
        f"[proposal_generator.oracle]\n{gt}[classifier.oracle]\n{gt}"
    )
    pipe = Pipeline(config)
    out = tmp / "out"
    stems = []
    for path in sorted(images.glob("*.png")):
        image = read_image(path)
        pipe.export(pipe.segment(image, cityscapes_vocab), image, out, path.stem, finish=False)
        stems.append(path.stem)
    finished = pipe.finish(out, None, stems)
    return tmp, gt_json, out, finished


def test_oracle_export_reproduces_the_ground_truth_files(oracle_run):
    tmp, _, out, finished = oracle_run
    assert finished == [
        out / "cityscapes_panoptic_val/frankfurt_000000_000001_gtFine_panoptic.png",
        out / "cityscapes_panoptic_val/lindau_000001_000002_gtFine_panoptic.png",
        out / "cityscapes_panoptic_val.json",
    ]
    for name in GROUND_TRUTH:
        city = name.split("_")[0]
        for suffix in ("instanceIds", "labelIds"):
            ours = png(out / suffix / "gtFine/val" / city / f"{name}_gtFine_{suffix}.png")
            np.testing.assert_array_equal(ours, png(tmp / "gt/gtFine/val" / city / f"{name}_gtFine_{suffix}.png"))


def test_oracle_panoptic_export_scores_pq_100_with_cityscapesscripts(oracle_run, tmp_path):
    _, gt_json, out, _ = oracle_run
    ours = out / "cityscapes_panoptic_val.json"
    for gt in (gt_json, ours):  # against the ground truth, and against itself
        results = cityscapes_pq(gt, ours, tmp_path)
        for group, n in (("All", 7), ("Things", 3), ("Stuff", 4)):
            assert (results[group]["pq"], results[group]["sq"], results[group]["rq"], results[group]["n"]) == (1.0, 1.0, 1.0, n)


def test_convert2panoptic_of_the_gtfine_export_is_the_panoptic_export(oracle_run, tmp_path):
    _, gt_json, out, _ = oracle_run
    converted = convert2panoptic(out / "instanceIds" / "gtFine", tmp_path)
    assert json.loads(converted.read_text()) == json.loads((out / "cityscapes_panoptic_val.json").read_text())
    assert json.loads(converted.read_text()) == json.loads(gt_json.read_text())
    for name in GROUND_TRUTH:
        file = f"{name}_gtFine_panoptic.png"
        assert (converted.with_suffix("") / file).read_bytes() == (out / "cityscapes_panoptic_val" / file).read_bytes()


def test_pixel_level_evaluator_of_cityscapesscripts_takes_the_export_as_written(oracle_run, tmp_path, monkeypatch):
    """``evalPixelLevelSemanticLabeling``'s own main, predictions = ``OUTDIR/labelIds`` (it walks
    the folder for one PNG per image), ground truth = the gtFine folder: every class IoU 1.0. The
    output folder itself holds several PNGs per image (instanceIds, panoptic): refused, as before."""
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as pixel_level

    tmp, _, out, _ = oracle_run
    scores = tmp_path / "pixel-level.json"

    def evaluate(predictions: Path, ground_truth: Path) -> dict:
        args = pixel_level.args
        for key, value in (("predictionPath", str(predictions)), ("predictionWalk", None), ("quiet", True), ("JSONOutput", True),
                           ("exportFile", str(scores)), ("groundTruthSearch", str(ground_truth / "gtFine/val/*/*_gtFine_labelIds.png")),
                           ("evalInstLevelScore", (ground_truth / "gtFine").is_dir() and ground_truth.name == "gt")):
            monkeypatch.setattr(args, key, value)
        monkeypatch.setattr(sys, "argv", ["csEvalPixelLevelSemanticLabeling"])
        quiet(pixel_level.main)
        return json.loads(scores.read_text())

    for ground_truth in (tmp / "gt", out / "labelIds"):  # the real ground truth, and the export read as ground truth
        result = evaluate(out / "labelIds", ground_truth)  # instance-weighted IoU needs instanceIds beside the ground truth
        assert result["averageScoreClasses"] == pytest.approx(1.0), result
        assert result["averageScoreInstClasses"] == pytest.approx(1.0) or ground_truth.name == "labelIds", result
    with pytest.raises(SystemExit):
        evaluate(out, tmp / "gt")  # the whole output folder: "Found multiple predictions"


def test_readers_of_both_layouts_agree_with_pq_1(oracle_run):
    tmp, _, out, _ = oracle_run
    gtfine = read_cityscapes(out)  # the output folder as written (both kinds of folder below it)
    assert read_cityscapes(out / "instanceIds" / "gtFine").names == gtfine.names
    panoptic = read_cityscapes_panoptic(out / "cityscapes_panoptic_val.json")
    assert (gtfine.format, panoptic.format) == ("cityscapes", "cityscapes-panoptic")
    assert gtfine.names == panoptic.names == ("frankfurt_000000_000001", "lindau_000001_000002")
    assert [(c.id, c.name) for c in gtfine.categories.values()] == EVAL_CLASSES
    assert [c.name for c in gtfine.categories.values() if c.isthing] == THINGS
    assert dict(gtfine.categories) == dict(panoptic.categories)
    one = gtfine.read("frankfurt_000000_000001")
    assert [(s["id"], s["category_id"], s["iscrowd"], s["area"]) for s in one.segments] == [
        (7, 7, 0, 40 * 128 - 2 * 16 * 20 - 36 * 10), (23, 23, 0, 24 * 128 - 16 - 4 * 10), (24000, 24, 0, 400),
        (26000, 26, 0, 320), (26001, 26, 0, 320),
    ]
    np.testing.assert_array_equal(one.panoptic_map, panoptic.read("frankfurt_000000_000001").panoptic_map)
    for gt, pred in ((gtfine, panoptic), (panoptic, gtfine), (read_cityscapes(tmp / "gt/gtFine"), panoptic)):
        agreement = evaluate_annotations(gt, pred)
        assert (agreement.report.all.pq, agreement.report.all.n, agreement.report.all.tp) == (1.0, 7, 10)
        assert agreement.needs_review == ()


@needs_cityscapesscripts
def test_one_car_missing_gives_the_hand_computed_pq(cityscapes_vocab, tmp_path):
    """Ground truth: road, sky, car 0, car 1, person. The prediction misses car 1 (void there).
    road, sky, person and car 0 match exactly (IoU 1): TP 4, car 1 is a FN. Per class:
    road 1, sky 1, person 1, car 1 / (1 + 0.5 * 1) = 2/3. PQ = (1 + 1 + 1 + 2/3) / 4 = 11/12;
    things (person, car) (1 + 2/3) / 2 = 5/6; stuff (road, sky) 1."""
    truth = street_instance_ids()
    guess = truth.copy()
    guess[guess == 26001] = 0
    exporter("cityscapes").export(result_from_instance_ids(truth, cityscapes_vocab), np.zeros((H, W, 3), np.uint8), tmp_path / "gt", "frankfurt_000000_000001")
    panoptic = exporter("cityscapes-panoptic")
    panoptic.export(result_from_instance_ids(guess, cityscapes_vocab), np.zeros((H, W, 3), np.uint8), tmp_path / "pred", "frankfurt_000000_000001")
    panoptic.finish(tmp_path / "pred", ["frankfurt_000000_000001"])
    pred_json = tmp_path / "pred" / "cityscapes_panoptic_val.json"
    agreement = evaluate_annotations(read_cityscapes(tmp_path / "gt"), read_cityscapes_panoptic(pred_json))
    report = agreement.report
    assert report.all.pq == pytest.approx(11 / 12) and report.all.n == 4
    assert report.things.pq == pytest.approx(5 / 6) and report.stuff.pq == 1.0
    assert (report.per_category[26].tp, report.per_category[26].fn, report.per_category[26].pq) == (1, 1, pytest.approx(2 / 3))
    assert [(i.name, i.changed) for i in agreement.needs_review] == [] and agreement.images[0].changed == ("car",)
    # cityscapesscripts' own evaluation says the same.
    results = cityscapes_pq(convert2panoptic(tmp_path / "gt" / "instanceIds" / "gtFine", tmp_path / "gt-panoptic"), pred_json, tmp_path)
    assert results["All"]["pq"] == pytest.approx(11 / 12) and results["Things"]["pq"] == pytest.approx(5 / 6)
    assert results["per_class"][26]["pq"] == pytest.approx(2 / 3)


@needs_cityscapesscripts
def test_reader_rules_for_groups_and_labels_ignored_in_evaluation(tmp_path):
    """A thing label without instance number is a crowd segment, labels with ignoreInEval are void,
    exactly as convert2panoptic reads them."""
    ids = street_instance_ids()
    ids[60:, :20] = 26  # a car group
    ids[60:, 20:40] = 1  # ego vehicle
    ids[60:, 40:60] = 29000  # a caravan (ignoreInEval)
    gtfine = write_gtfine(tmp_path, {"ulm_000000_000001": ids})
    ours = read_cityscapes(gtfine).read("ulm_000000_000001")
    assert [(s["id"], s["category_id"], s["iscrowd"]) for s in ours.segments] == [
        (7, 7, 0), (23, 23, 0), (26, 26, 1), (24000, 24, 0), (26000, 26, 0), (26001, 26, 0),
    ]
    assert (ours.panoptic_map[60:, 20:60] == 0).all()
    theirs = read_cityscapes_panoptic(convert2panoptic(gtfine, tmp_path / "converted")).read("ulm_000000_000001")
    np.testing.assert_array_equal(ours.panoptic_map, theirs.panoptic_map)
    assert [(s["id"], s["category_id"], s["iscrowd"], s["area"]) for s in ours.segments] == [
        (s["id"], s["category_id"], s["iscrowd"], s["area"]) for s in theirs.segments
    ]


@needs_cityscapesscripts
def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(EvaluationError, match=r"ground-truth Cityscapes folder .*nowhere does not exist"):
        read_cityscapes(tmp_path / "nowhere")
    with pytest.raises(EvaluationError, match=r"holds no \*_gtFine_instanceIds.png files: give the gtFine folder"):
        read_cityscapes(tmp_path)
    ids = street_instance_ids()
    ids[0, 0] = 40123
    gtfine = write_gtfine(tmp_path, {"ulm_000000_000001": ids})
    with pytest.raises(EvaluationError, match=r"^ulm_000000_000001: ground-truth PNG .* holds the value 40123, whose label id 40 is no Cityscapes label"):
        read_cityscapes(gtfine).read("ulm_000000_000001")
    write_gtfine(tmp_path, {"ulm_000000_000001": street_instance_ids()}, split="test")
    with pytest.raises(EvaluationError, match=r"are both image 'ulm_000000_000001'; images are paired by name, so read one split at a time"):
        read_cityscapes(gtfine)
