"""Label QA (``ovpanoptic qa``): hand-worked IoU, confusion, targets, mask AP, agreement, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import small_coco

from ovpanoptic.cli import main
from ovpanoptic.evaluation import AnnotatedImage, CategoryInfo, EvaluationError, PanopticAnnotations, id_to_rgb, rgb_to_id
from ovpanoptic.evaluation.qa import run_qa
from ovpanoptic.evaluation.targets import Targets, load_targets

CATS = {1: CategoryInfo(1, "box", True), 2: CategoryInfo(2, "cloth", True), 3: CategoryInfo(3, "floor", False)}


def _segments(ids: np.ndarray, category_of: dict[int, int]) -> tuple[dict, ...]:
    return tuple({"id": i, "category_id": c, "iscrowd": 0, "area": int((ids == i).sum())} for i, c in category_of.items() if (ids == i).any())


def _set(source: str, images: dict[str, AnnotatedImage]) -> PanopticAnnotations:
    return PanopticAnnotations(source, "memory", CATS, tuple(images), images.__getitem__)


# Image a (4x4): box 1, cloth 2, floor 3, one void pixel. The prediction takes one cloth pixel as box,
# leaves one floor pixel void, and labels the void pixel floor.
GT_A = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3], [3, 3, 3, 0]])
PRED_A = np.array([[1, 1, 1, 2], [1, 1, 2, 2], [3, 3, 3, 3], [3, 3, 0, 3]])
# Image b (4x4): a box on the left half, floor on the right; the prediction calls the box cloth.
GT_B = np.array([[1, 1, 3, 3]] * 4)


def _hand_sets() -> tuple[PanopticAnnotations, PanopticAnnotations]:
    gt = _set("gt", {"a": AnnotatedImage("a", GT_A, _segments(GT_A, {1: 1, 2: 2, 3: 3})), "b": AnnotatedImage("b", GT_B, _segments(GT_B, {1: 1, 3: 3}))})
    pred = _set("pred", {"a": AnnotatedImage("a", PRED_A, _segments(PRED_A, {1: 1, 2: 2, 3: 3})), "b": AnnotatedImage("b", GT_B.copy(), _segments(GT_B, {1: 2, 3: 3}))})
    return gt, pred


def test_hand_worked_iou_confusion_and_targets() -> None:
    gt, pred = _hand_sets()
    report = run_qa(gt, pred, targets=Targets(classes={"floor": 0.70, "cloth": "deformable"}))
    # pixels (rows gt, columns prediction; void, box, cloth, floor)
    assert report.labels == ("void", "box", "cloth", "floor")
    assert report.pixel_confusion.tolist() == [[0, 0, 0, 1], [0, 4, 8, 0], [0, 1, 3, 0], [1, 0, 0, 14]]
    # segments: a's three match; b's box is matched by a cloth segment (IoU 1): relabelled, not missed
    assert report.segment_confusion.tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 2]]
    by = {c.name: c for c in report.classes}
    # box: 4 / (12 + 5 - 4); cloth: 3 / (4 + 11 - 3); floor: 14 / (15 + 14 - 14) (gt-void pixel ignored)
    assert by["box"].iou == pytest.approx(4 / 13, abs=1e-12)
    assert by["cloth"].iou == pytest.approx(3 / 12, abs=1e-12)
    assert by["floor"].iou == pytest.approx(14 / 15, abs=1e-12)
    assert report.miou == pytest.approx((4 / 13 + 3 / 12 + 14 / 15) / 3, abs=1e-12)
    assert (by["box"].target.kind, by["box"].target.target, by["box"].target.source) == ("rigid", 0.85, "default")
    assert (by["cloth"].target.kind, by["cloth"].target.target) == ("deformable", 0.75)
    assert (by["floor"].target.kind, by["floor"].target.target) == ("number", 0.70)
    assert [(c.name, c.passed, c.low) for c in report.classes] == [("box", False, True), ("cloth", False, True), ("floor", True, False)]
    assert report.pass_rate == pytest.approx(1 / 3)
    assert by["box"].worst_images == ("b", "a")  # b: box IoU 0, a: 4/5
    # per image: b has PQ 1/3 (floor 1, box FN, cloth FP), a has (4/5 + 3/4 + 6/7) / 3
    assert [(i.name, round(i.pq, 12)) for i in report.images] == [("b", round(1 / 3, 12)), ("a", round((0.8 + 0.75 + 6 / 7) / 3, 12))]
    assert report.images[0].pixel_agreement == pytest.approx(8 / 16)
    assert report.images[1].pixel_agreement == pytest.approx(13 / 15)
    assert report.review == ("b",)
    assert report.agreement.report.per_category[1].pq == pytest.approx(0.8 * 2 / 3)


def test_agreement_counts_void_of_both_sides() -> None:
    gt, pred = _hand_sets()
    report = run_qa(gt, pred, agreement=True, targets=Targets(classes={"floor": "thin"}))
    by = {c.name: c for c in report.classes}
    # floor: 14 / (15 + 15 - 14): the pixel only the second annotator labelled counts now
    assert by["floor"].iou == pytest.approx(14 / 16, abs=1e-12)
    assert (by["floor"].target.kind, by["floor"].target.target, by["floor"].passed) == ("thin", 0.70, True)
    assert report.mode == "agreement" and report.first_role == "annotator A"


def test_agreement_pass_fail_per_kind_at_the_default_targets() -> None:
    """The same IoU 0.80 passes as deformable (75) and thin (70), fails as rigid (85); 0.75 passes deformable exactly."""
    cats = {1: CategoryInfo(1, "r", True), 2: CategoryInfo(2, "d", True), 3: CategoryInfo(3, "t", True), 4: CategoryInfo(4, "e", True)}
    gt = np.zeros((10, 40), np.int64)
    pred = np.zeros((10, 40), np.int64)
    for k in range(3):  # 10x4 blocks; the prediction covers 8 of 10 rows: IoU 32/40 = 0.8
        gt[:, 10 * k: 10 * k + 4] = k + 1
        pred[:8, 10 * k: 10 * k + 4] = k + 1
    gt[:4, 34:37] = 4  # 12 pixels, the prediction 9 of them: IoU 0.75
    pred[:3, 34:37] = 4
    seg = {i: i for i in range(1, 5)}
    a = PanopticAnnotations("A", "memory", cats, ("x",), lambda n: AnnotatedImage("x", gt, _segments(gt, seg)))
    b = PanopticAnnotations("B", "memory", cats, ("x",), lambda n: AnnotatedImage("x", pred, _segments(pred, seg)))
    targets = Targets(vocabulary={"r": "rigid", "d": "deformable", "t": "thin", "e": "deformable"})
    report = run_qa(a, b, agreement=True, targets=targets)
    assert [(c.name, round(c.iou, 12), c.target.target, c.passed) for c in report.classes] == [
        ("r", 0.8, 0.85, False), ("d", 0.8, 0.75, True), ("t", 0.8, 0.70, True), ("e", 0.75, 0.75, True),
    ]
    assert [c.name for c in report.failing] == ["r"] and report.failing[0].worst_images == ("x",)


def _squares(shift: int = 0, drop: bool = False, merge: bool = False, relabel: bool = False) -> AnnotatedImage:
    """40x40: four 10x10 boxes (ids 1-4, class box) and a cloth (id 5); the perturbations move box 1
    by ``shift`` pixels, drop box 2, merge boxes 3 and 4 into one segment, relabel the cloth as a box."""
    ids = np.zeros((40, 40), np.int64)
    ids[0:10, 0 + shift: 10 + shift] = 1
    if not drop:
        ids[0:10, 20:30] = 2
    ids[20:30, 0:10] = 3
    ids[20:30, 12:22] = 3 if merge else 4
    ids[32:40, 30:40] = 5
    cat = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1 if relabel else 2}
    return AnnotatedImage("s", ids, _segments(ids, cat))


def test_mask_ap_is_one_for_identical_sets_and_the_cocoeval_value_for_a_perturbed_set() -> None:
    gt = _set("gt", {"s": _squares()})
    same = run_qa(gt, _set("same", {"s": _squares()}))
    assert (same.mask_ap.ap, same.mask_ap.ap50, same.mask_ap.ap75, same.mask_ap.ap95) == (1.0, 1.0, 1.0, 1.0)
    # box: 4 ground-truth boxes; detections (all score 1, in id order): box 1 shifted by 1 (IoU 90/110 =
    # 0.818: a match at thresholds .50-.80, 7 of 10), box 3+4 merged (IoU 100/200 with either:
    # a match at .50 only), the cloth relabelled a box (a false positive). cloth: no detection.
    perturbed = run_qa(gt, _set("perturbed", {"s": _squares(shift=1, drop=True, merge=True, relabel=True)}))
    ap = perturbed.mask_ap
    # COCOeval's 101-point interpolated precision, box class: at .50: TP, TP, FP -> recall .25/.5, precision 1
    # up to recall .5 -> 51/101; at .55-.80: TP, FP, FP -> recall .25 at precision 1 -> 26/101; above: 0.
    box50, box_mid = 51 / 101, 26 / 101
    assert ap.per_category[1] == pytest.approx((box50 + 6 * box_mid) / 10, abs=1e-12)
    assert ap.per_category[2] == 0.0
    assert ap.ap50 == pytest.approx((box50 + 0.0) / 2, abs=1e-12)
    assert ap.ap75 == pytest.approx((box_mid + 0.0) / 2, abs=1e-12)
    assert ap.ap95 == 0.0
    assert ap.ap == pytest.approx(((box50 + 6 * box_mid) / 10) / 2, abs=1e-12)
    # the relabelled cloth shows in the segment confusion: cloth row, box column
    assert perturbed.segment_confusion[2, 1] == 1


def test_targets_file_toml_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "targets.toml"
    good.write_text('default = "deformable"\n[kinds]\nthin = 65\n[classes]\n"Cable  Tray" = "thin"\npallet = 80\n', "utf-8")
    targets = load_targets(good)
    assert targets.for_class("cable tray").target == pytest.approx(0.65)
    assert targets.for_class("pallet").target == pytest.approx(0.80)
    assert targets.for_class("other").to_dict() == {"kind": "deformable", "target": 0.75, "source": "default"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[classes]\npallet = "bendy"\n', "utf-8")
    with pytest.raises(EvaluationError, match=r"kind 'bendy' is not one of rigid, deformable, thin or a target IoU in percent"):
        load_targets(bad)
    bad.write_text('[classes]\npallet = 0.8\n', "utf-8")
    with pytest.raises(EvaluationError, match=r"1 to 100, e.g. 80\): fix the value"):
        load_targets(bad)


def _perturbed_copy(src: Path, dst: Path) -> None:
    """The COCO fixture with image 439180's horses relabelled as trucks and its largest person dropped."""
    shutil.copytree(src, dst)
    data = json.loads((dst / "panoptic.json").read_text())
    for ann in data["annotations"]:
        if ann["file_name"] != "000000439180.png":
            continue
        drop = 3937500
        path = dst / "panoptic" / ann["file_name"]
        ids = rgb_to_id(np.asarray(Image.open(path).convert("RGB")))
        ids[ids == drop] = 0
        Image.fromarray(id_to_rgb(ids)).save(path)
        ann["segments_info"] = [dict(s, category_id=8 if s["category_id"] == 19 else s["category_id"]) for s in ann["segments_info"] if s["id"] != drop]
    (dst / "panoptic.json").write_text(json.dumps(data))


def test_cli_agreement_names_the_perturbed_classes_and_image(coco_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _perturbed_copy(coco_sample, tmp_path / "b")
    out = tmp_path / "qa"
    code = main(["qa", "--agreement", str(coco_sample), str(tmp_path / "b"), "-o", str(out), "--fail-below-target"])
    text = capsys.readouterr().out
    assert code == 1  # classes below target with --fail-below-target
    data = json.loads((out / "qa.json").read_text())
    assert data["mode"] == "agreement"
    assert data["failing"] == ["truck", "horse"] and data["low_iou"] == ["truck", "horse"]
    by = {c["name"]: c for c in data["classes"]}
    # truck: its 7471 pixels agree, the 31728 horse pixels B calls truck do not; person: the dropped 3512 pixels
    assert by["truck"]["iou"] == pytest.approx(7471 / (7471 + 31728), abs=1e-12)
    assert by["person"]["iou"] == pytest.approx((85111 - 3512) / 85111, abs=1e-12) and by["person"]["passed"] is True
    assert by["horse"]["iou"] == 0.0 and by["horse"]["worst_images"] == ["000000439180"]
    assert by["truck"]["passed"] is False and by["truck"]["worst_images"] == ["000000439180"]
    assert by["grass-merged"]["iou"] == 1.0 and by["grass-merged"]["passed"] is True
    assert data["review"] == ["000000439180"]
    labels = data["confusion"]["labels"]
    horse, truck = labels.index("horse"), labels.index("truck")
    assert data["confusion"]["segments"][horse][truck] == 11  # the 11 non-crowd horses, matched as trucks
    assert data["confusion"]["pixels"][horse][truck] == 31728
    assert "horse" in text and "FAIL" in text
    assert sorted(p.name for p in out.iterdir()) == ["classes.csv", "confusion_pixels.csv", "confusion_segments.csv", "images.csv", "qa.json", "report.html"]
    assert (out / "classes.csv").read_text().splitlines()[0] == "id,name,isthing,kind,target,iou,passed,low_iou,pq,sq,rq,ap,gt_pixels,pred_pixels"


def test_cli_qa_usage_errors(coco_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qa", "-o", str(tmp_path / "q")]) == 2
    assert "give the ground truth and the labels to check (--gt PATH --pred PATH), or two annotators' labels (--agreement A B)" in capsys.readouterr().err
    assert main(["qa", "--gt", str(coco_sample), "--pred", str(coco_sample), "--agreement", "a", "b"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["qa", "--gt", str(coco_sample), "--pred", str(coco_sample), "--targets", str(tmp_path / "none.toml"), "-o", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "targets file" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "q").exists()


def test_vocabulary_kinds_set_the_targets(tmp_path: Path) -> None:
    from ovpanoptic.errors import VocabularyError
    from ovpanoptic.types import Category, Vocabulary

    vocab = Vocabulary.from_dict({"name": "v", "categories": [
        {"id": 1, "name": "box", "isthing": True, "kind": "rigid"}, {"id": 2, "name": "cloth", "isthing": True, "kind": 60},
    ]})
    assert vocab.categories[1].to_dict()["kind"] == 60 and "kind" not in Category(3, "floor", False).to_dict()
    targets = Targets().with_vocabulary({c.name: c.kind for c in vocab.categories})
    assert targets.for_class("cloth").to_dict() == {"kind": "number", "target": 0.60, "source": "vocabulary"}
    assert targets.for_class("box").to_dict() == {"kind": "rigid", "target": 0.85, "source": "vocabulary"}
    with pytest.raises(VocabularyError, match=r"kind of 'box' must be rigid, deformable, thin or a target IoU in percent \(1 to 100\), got 'stiff'"):
        Category(1, "box", True, kind="stiff")


def test_cli_qa_output_targets_and_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = small_coco(tmp_path / "gt")
    (tmp_path / "notadir").write_text("x")
    sub = tmp_path / "notadir" / "sub"
    assert main(["qa", "--gt", str(gt), "--pred", str(gt), "-o", str(sub)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot create the output folder {sub}: {tmp_path / 'notadir'} is a file; choose another output folder with -o\n"
    )
    targets = tmp_path / "targets.toml"
    targets.write_text('[classes]\nunicorn = "rigid"\nbax = "thin"\n')
    out = tmp_path / "qa"
    assert main(["qa", "--gt", str(gt), "--pred", str(gt), "--targets", str(targets), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: targets file {targets}: [classes] 'unicorn' is not a class of {gt} or {gt}. The classes are: box, floor. "
        "Fix the name in the targets file or remove it\n"
    )
    targets.write_text('[classes]\nbax = "thin"\n')
    assert main(["qa", "--gt", str(gt), "--pred", str(gt), "--targets", str(targets), "-o", str(out)]) == 2
    assert f"[classes] 'bax' is not a class of {gt} or {gt}. Did you mean 'box'? The classes are: box, floor." in capsys.readouterr().err
    assert not out.exists()
    assert main(["qa", "--gt", str(gt), "--pred", str(gt), "--no-html", "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""
    (out / "mine.txt").write_text("kept")
    assert main(["qa", "--gt", str(gt), "--pred", str(gt), "--no-html", "-o", str(out)]) == 0
    assert capsys.readouterr().err == (
        f"replaced the earlier report's qa.json, classes.csv, images.csv, confusion_pixels.csv, confusion_segments.csv in {out} "
        "(other files there are left alone)\n"
    )
    assert (out / "mine.txt").read_text() == "kept"


def test_cli_qa_ground_truth_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = small_coco(tmp_path / "gt")
    empty = tmp_path / "empty.json"
    (tmp_path / "empty").mkdir()
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "box", "isthing": 1}]}))
    assert main(["qa", "--gt", str(empty), "--pred", str(gt), "-o", str(tmp_path / "qa")]) == 2
    assert capsys.readouterr().err == f"error: the ground truth (--gt) {empty} holds no image: give a file or folder with labelled images\n"
    assert not (tmp_path / "qa").exists()
