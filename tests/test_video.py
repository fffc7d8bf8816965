"""Video: frame sources, track bookkeeping, the loop with oracle keyframes and a ground-truth
tracker plugin, the resumable output folder, the CLI, and the tracker contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import video_clip
from PIL import Image
from video_clip import CLASSES, FLOOR, STUFF, WALL, A, B, C, D, ground_truth, write_clip, write_scene

from ovpanoptic import hookimpl
from ovpanoptic.builtins.oracle import GroundTruthIndex, OracleConfig
from ovpanoptic.cli import main
from ovpanoptic.config import Config
from ovpanoptic.errors import ComponentError, InputError
from ovpanoptic.evaluation import rgb_to_id
from ovpanoptic.evaluation.video import evaluate_video
from ovpanoptic.imageio import image_digest
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import registry_with
from ovpanoptic.types import Category, PanopticResult, TrackMasks, Vocabulary
from ovpanoptic.video import FrameSelection, TrackBook, TrackingOptions, open_frames, segment_video
from ovpanoptic.video.output import VideoOutput

# -- plugins a third party would write -------------------------------------------------------------


class GroundTruthTracker:
    """Follows each seed as the ground-truth segment it overlaps most on the window's first frame (in
    either direction: it opts in to bidirectional runs, as ``flow`` does)."""

    bidirectional = True

    def __init__(self, config: OracleConfig, context=None) -> None:
        self.index = GroundTruthIndex(config)
        self.calls = 0

    def track(self, frames, seeds, *, progress=None):
        self.calls += 1
        first = self.index.lookup(frames[0])["ids"]
        owner = {}
        for tid, mask in zip(seeds.ids.tolist(), seeds.masks):
            values, counts = np.unique(first[mask], return_counts=True)
            owner[tid] = values[counts.argmax()]
        for image in frames[1:]:
            ids = self.index.lookup(image)["ids"]
            yield TrackMasks.from_dict({t: ids == g for t, g in owner.items()}, *ids.shape)


class NoisyOracle:
    """The oracle classifier, except that on the frames in ``flip`` every box is called a ball."""

    def __init__(self, config: OracleConfig, context=None) -> None:
        from ovpanoptic.builtins.oracle import OracleClassifier

        self.inner = OracleClassifier(config, context)
        self.flip: set[str] = set()

    def prepare(self, image, proposals):
        import dataclasses

        prepared = self.inner.prepare(image, proposals)
        if image_digest(image) in self.flip:
            prepared = dataclasses.replace(prepared, categories=np.where(prepared.categories == 1, 2, prepared.categories))
        return prepared

    def score(self, prepared, vocabulary):
        return self.inner.score(prepared, vocabulary)


class BadTracker:
    """Breaks the tracker contract in the way ``mode`` says."""

    mode = "short"

    def __init__(self, config, context=None) -> None:
        pass

    def track(self, frames, seeds, *, progress=None):
        if self.mode == "foreign":
            yield TrackMasks(np.array([999], np.int64), seeds.masks[:1].copy())
        elif self.mode == "type":
            yield {1: seeds.masks[0]}
        elif self.mode == "raise":
            raise RuntimeError("lost the model")
        elif self.mode == "none":
            yield None
        else:
            yield seeds  # one frame only, whatever the window's length


class NotIterableTracker:
    """``track()`` returns something that is not an iterable (a plain function returning None)."""

    def __init__(self, config, context=None) -> None:
        pass

    def track(self, frames, seeds, *, progress=None):
        return None


class VideoPlugins:
    @hookimpl
    def register_trackers(self, register):
        register("ground-truth", GroundTruthTracker, config=OracleConfig)
        register("bad", BadTracker)
        register("not-iterable", NotIterableTracker)

    @hookimpl
    def register_classifiers(self, register):
        register("noisy-oracle", NoisyOracle, config=OracleConfig)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip"))


def oracle_pipeline(clip, **pipeline) -> Pipeline:
    gt = {"gt_json": str(clip["gt_json"]), "gt_dir": str(clip["gt_dir"]), "images_dir": str(clip["frames"])}
    settings = {
        "proposal_generator": "oracle", "classifier": "oracle", "fuser": "detectron2", "tracker": "ground-truth",
        "max_side": 0, "device": "cpu", **pipeline,
    }
    config = Config.from_dict(
        {
            "pipeline": settings,
            "proposal_generator": {"oracle": gt},
            "classifier": {"oracle": gt, "noisy-oracle": gt},
            "tracker": {"ground-truth": gt},
            "fuser": {"detectron2": {"stuff_area_thresh": 0}},
        }
    )
    return Pipeline(config, registry=registry_with(VideoPlugins()))


def run(pipe, clip, outdir, **options):
    vocab = pipe.vocabulary(CLASSES, STUFF)
    source = open_frames(clip["frames"], name="clip")
    output = VideoOutput(outdir, {"test": 1})
    items = []
    for item in segment_video(pipe, source, vocab, TrackingOptions(**options)):
        output.write(item)
        items.append(item)
    output.finish(items[-1].book, source)
    return items


def gt_to_pred(items):
    """Per frame, the ground-truth id each predicted id covers (the prediction must equal the ground
    truth up to renaming ids, pixel for pixel)."""
    maps = []
    for item in items:
        gt = ground_truth(item.index)
        pred = np.asarray(item.result.panoptic_map)
        pairs = set(zip(gt.ravel().tolist(), pred.ravel().tolist()))
        assert len(pairs) == len({g for g, _ in pairs}) == len({p for _, p in pairs}), f"frame {item.index}: {sorted(pairs)}"
        maps.append(dict(pairs))
    return maps


# -- the id logic, exactly --------------------------------------------------------------------------


def test_oracle_keyframes_and_ground_truth_tracker_keep_every_id(clip, tmp_path):
    items = run(oracle_pipeline(clip), clip, tmp_path / "out", keyframe_every=4, max_unseen=2)
    assert [(i.index, i.keyframe) for i in items] == [(t, t in (0, 4, 8)) for t in range(12)]
    maps = gt_to_pred(items)
    # One predicted id per ground-truth object over the whole clip, and ids are never reused.
    ids = {}
    for m in maps:
        for g, p in m.items():
            assert ids.setdefault(g, p) == p
    assert len(set(ids.values())) == len(ids) == 6
    # Fuser order on frame 0: things A, B, D by id, then the stuff; C enters at frame 4 with a new id.
    assert ids == {A: 1, B: 2, D: 3, WALL: 4, FLOOR: 5, C: 6}
    assert B not in maps[4] and C not in maps[3]
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "tracks.csv").open()))
    assert [(r["id"], r["class"], r["kind"], r["first_frame"], r["last_frame"], r["frames_seen"], r["ended"]) for r in rows] == [
        ("1", "box", "thing", "0", "11", "12", "False"),
        ("2", "box", "thing", "0", "3", "4", "True"),  # B left: unseen on frames 4, 5, 6 > max_unseen 2
        ("3", "ball", "thing", "0", "11", "12", "False"),
        ("4", "wall", "stuff", "0", "11", "12", "False"),
        ("5", "floor", "stuff", "0", "11", "12", "False"),
        ("6", "ball", "thing", "4", "11", "8", "False"),
    ]
    data = json.loads((out / "panoptic.json").read_text())
    assert data["videos"] == [{"id": "clip", "name": "clip", "fps": 10.0, "width": 64, "height": 48, "frames": 12}]
    assert [(i["id"], i["frame_index"], i["video_id"], i["keyframe"]) for i in data["images"]] == [
        (t, t, "clip", t in (0, 4, 8)) for t in range(12)
    ]
    frame8 = {s["id"]: (s["category_id"], s["area"], s["bbox"]) for s in data["annotations"][8]["segments_info"]}
    # D (ball, 12x12) is partly behind A at x 26..35: 144 - 6 x 10 = 84 pixels.
    assert frame8 == {1: (1, 100, [26, 30, 10, 10]), 3: (2, 84, [30, 28, 12, 12]), 4: (3, 1472, [0, 0, 64, 24]),
                      5: (4, 1352, [0, 24, 64, 24]), 6: (2, 64, [40, 4, 8, 8])}
    png = rgb_to_id(np.asarray(Image.open(out / "panoptic" / "000008.png").convert("RGB")))
    assert np.array_equal(png, np.asarray(items[8].result.panoptic_map))
    report = evaluate_video(clip["gt_json"], clip["gt_dir"], out / "panoptic.json", out / "panoptic")
    assert {k: r.all.pq for k, r in report.vpq.per_span.items()} == {1: 1.0, 5: 1.0, 10: 1.0, 15: 1.0}
    assert report.vpq.all == report.vpq.things == report.vpq.stuff == 1.0
    # Windows: 12 of 1 frame, 8 of 5, 3 of 10, and the 15-frame span clipped to the 12 frames: 1.
    assert [r.n_images for r in report.vpq.per_span.values()] == [12, 8, 3, 1]
    assert (report.stq.overall.stq, report.stq.overall.aq, report.stq.overall.sq) == (1.0, 1.0, 1.0)


def test_a_single_bad_keyframe_does_not_flip_a_track_class(clip, tmp_path):
    pipe = oracle_pipeline(clip, classifier="noisy-oracle")
    pipe.component("classifier").flip = {image_digest(video_clip.frame(4))}
    items = run(pipe, clip, tmp_path / "out", keyframe_every=4)
    classes = [{s.id: s.category_id for s in i.result.segments if s.isthing} for i in items]
    assert [c[1] for c in classes] == [1] * 12  # A stays a box on every frame, the noisy keyframe 4 included
    tracks = {t["id"]: t for t in json.loads((tmp_path / "out" / "tracks.json").read_text())}
    assert tracks[1]["class"] == "box"
    assert tracks[1]["votes"] == {"box": {"keyframes": 2, "score": 2.0}, "ball": {"keyframes": 1, "score": 1.0}}
    data = json.loads((tmp_path / "out" / "panoptic.json").read_text())
    assert {a["image_id"]: [s["category_id"] for s in a["segments_info"] if s["id"] == 1] for a in data["annotations"]} == {
        t: [1] for t in range(12)
    }


def test_keyframes_on_every_frame_with_the_hold_tracker_match_ids_by_iou(clip, tmp_path, capsys):
    items = run(oracle_pipeline(clip, tracker="hold"), clip, tmp_path / "out", keyframe_every=1, max_unseen=0)
    assert all(i.keyframe for i in items)
    maps = gt_to_pred(items)
    # Every object keeps its id from frame to frame by mask IoU. D too when A passes in front of it:
    # on frame 10 D's visible part jumps from A's right side to its left (IoU 24 / 74 = 0.32 < 0.5 with
    # frame 9: IoU alone would give it a new id), but the evidence agrees: 24 of the detection's 44
    # pixels lie on where D was (24 / 44 >= 0.5 of the smaller mask), it is a ball, and its colour
    # features match: the same ball.
    assert [m[D] for m in maps] == [3] * 12
    assert [m[A] for m in maps] == [1] * 12 and [m[C] for m in maps[4:]] == [6] * 8 and [m[B] for m in maps[:4]] == [2] * 4
    out = tmp_path / "out"
    report = evaluate_video(clip["gt_json"], clip["gt_dir"], out / "panoptic.json", out / "panoptic")
    assert (report.stq.overall.aq, report.stq.overall.sq, report.stq.overall.stq) == (1.0, 1.0, 1.0)
    assert report.vpq.per_span[1].all.pq == 1.0 and report.vpq.per_span[5].all.pq == 1.0
    # The command line prints the same report.
    code = main(["eval-video", "--gt-json", str(clip["gt_json"]), "--gt-dir", str(clip["gt_dir"]),
                 "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic"), "--spans", "1,5", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stq"]["aq"] == 1.0 and printed["vpq"]["spans"] == [1, 5]
    assert main(["eval-video", "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic"), "--consistency-threshold", "0.6"]) == 0
    table = capsys.readouterr().out
    # A moves 3 of its 10 columns per frame (IoU 7/13) on all 11 pairs, B's last pair is 2/4, and D's
    # visible part jumps (IoU 24/74) then grows from 44 to 74 pixels (IoU 44/74): 14 pairs below 0.6.
    assert "frame(s); 14 consecutive-frame IoU(s) below 60.0%" in table
    assert "clip        3             ball         9->10  32.432" in table
    assert "clip        3             ball        10->11  59.459" in table


# -- TrackBook -------------------------------------------------------------------------------------


VOCAB = Vocabulary((Category(1, "box", True), Category(2, "ball", True), Category(3, "floor", False)))


def result_of(labels: dict[int, tuple[int, float]], boxes: dict[int, tuple[int, int, int, int]], size=(20, 20)) -> PanopticResult:
    pm = np.zeros(size, np.int32)
    for sid, (x0, y0, x1, y1) in boxes.items():
        pm[y0:y1, x0:x1] = sid
    return PanopticResult.from_map(pm, labels, VOCAB)


def masks_of(boxes: dict[int, tuple[int, int, int, int]], size=(20, 20)) -> TrackMasks:
    out = {}
    for tid, (x0, y0, x1, y1) in boxes.items():
        m = np.zeros(size, bool)
        m[y0:y1, x0:x1] = True
        out[tid] = m
    return TrackMasks.from_dict(out, *size)


def test_hungarian_assignment_takes_the_best_total_iou_not_the_greedy_pair():
    book = TrackBook(VOCAB, TrackingOptions(match_iou=0.3))
    book.keyframe(0, result_of({1: (1, 0.9), 2: (1, 0.9)}, {1: (0, 0, 10, 10), 2: (10, 0, 20, 10)}), None)
    # Carried to frame 4, track 2 shrank inside track 1's place. Detection 7 (columns 0-4) has IoU 0.5
    # with track 1 and 0.4 with track 2; detection 8 (columns 5-7) has 0.3 with track 1 and 0 with
    # track 2. Greedy (best pair first) gives 7 to track 1 and leaves 8 new; the assignment that
    # maximises the total (0.4 + 0.3 > 0.5) continues both tracks.
    predicted = masks_of({1: (0, 0, 10, 10), 2: (0, 0, 2, 10)})
    second = book.keyframe(4, result_of({7: (1, 0.9), 8: (1, 0.9)}, {7: (0, 0, 5, 10), 8: (5, 0, 8, 10)}), predicted)
    assert {s.id: s.bbox_xyxy for s in second.segments} == {2: (0, 0, 5, 10), 1: (5, 0, 8, 10)}
    assert book.next_id == 3


def test_a_detection_below_match_iou_starts_a_new_track_and_ids_are_never_reused():
    book = TrackBook(VOCAB, TrackingOptions(match_iou=0.5, max_missed=0))
    book.keyframe(0, result_of({1: (1, 0.8)}, {1: (0, 0, 10, 10)}), None)
    moved = book.keyframe(1, result_of({5: (1, 0.8)}, {5: (6, 0, 16, 10)}), masks_of({1: (0, 0, 10, 10)}))  # IoU 0.25
    assert [s.id for s in moved.segments] == [2]
    assert book.tracks[1].ended_at == 1  # missed once, max_missed 0
    back = book.keyframe(2, result_of({5: (1, 0.8)}, {5: (0, 0, 10, 10)}), masks_of({2: (6, 0, 16, 10)}))
    assert [s.id for s in back.segments] == [3]


def test_a_missed_track_is_drawn_where_the_tracker_carries_it_until_max_missed():
    book = TrackBook(VOCAB, TrackingOptions(max_missed=1))
    book.keyframe(0, result_of({1: (1, 0.8), 2: (3, 0.7)}, {1: (0, 0, 5, 5), 2: (0, 10, 20, 20)}), None)
    first = book.keyframe(4, result_of({2: (3, 0.7)}, {2: (0, 10, 20, 20)}), masks_of({1: (1, 0, 6, 5), 2: (0, 10, 20, 20)}))
    assert {s.id: s.area for s in first.segments} == {1: 25, 2: 200}
    second = book.keyframe(8, result_of({2: (3, 0.7)}, {2: (0, 10, 20, 20)}), masks_of({1: (2, 0, 7, 5), 2: (0, 10, 20, 20)}))
    assert {s.id for s in second.segments} == {2} and book.tracks[1].ended_at == 8


def test_the_vote_needs_more_keyframes_not_a_higher_score():
    book = TrackBook(VOCAB, TrackingOptions())
    same_look = {1: np.ones(4, np.float32)}  # the classifier's features agree: one object, classified differently
    book.keyframe(0, result_of({1: (1, 0.4)}, {1: (0, 0, 10, 10)}), None, same_look)
    seen = []
    for t, (category, score) in enumerate([(2, 0.99), (2, 0.95), (1, 0.5)], start=1):
        out = book.keyframe(t, result_of({1: (category, score)}, {1: (0, 0, 10, 10)}), masks_of({1: (0, 0, 10, 10)}), same_look)
        seen.append(out.segments[0].category_id)
    # 1 box vs 1 ball: a tie keeps the box; 2 balls vs 1 box: ball; 2 vs 2: the current class (ball) stays.
    assert seen == [1, 2, 2]
    assert book.records()[0].votes == {1: (2, 0.9), 2: (2, 1.94)}
    assert book.records()[0].class_changes == ((2, 1, 2),)  # the change is recorded: frame 2, box -> ball


def test_held_stuff_fills_what_moving_things_uncover():
    book = TrackBook(VOCAB, TrackingOptions())
    # Keyframe: floor (id 2) on the lower half, void above; a box (id 1) in the floor's top-left corner.
    first = book.keyframe(0, result_of({1: (1, 0.9), 2: (3, 0.8)}, {2: (0, 10, 20, 20), 1: (0, 10, 6, 16)}), None)
    assert book.seeds(first).ids.tolist() == [1]  # only things go to the tracker
    box = np.zeros((20, 20), bool)
    box[10:16, 8:14] = True  # it moved right: its old place is floor now, the void above stays void
    out = book.tracked(1, TrackMasks(np.array([1], np.int64), box[None]))
    pm = np.asarray(out.panoptic_map)
    assert (pm[10:16, 0:8] == 2).all() and (pm[10:16, 8:14] == 1).all() and (pm[:10] == 0).all()
    assert {s.id: s.area for s in out.segments} == {1: 36, 2: 164}


def test_tracked_stuff_fills_what_things_leave():
    book = TrackBook(VOCAB, TrackingOptions(track_stuff=True))
    book.keyframe(0, result_of({1: (1, 0.9), 2: (3, 0.8)}, {2: (0, 0, 20, 20), 1: (0, 0, 6, 6)}), None)
    # The box moved right; the floor mask the tracker carried still has the box's old hole.
    floor = np.ones((20, 20), bool)
    floor[0:6, 0:6] = False
    box = np.zeros((20, 20), bool)
    box[0:6, 4:10] = True
    out = book.tracked(1, TrackMasks(np.array([1, 2], np.int64), np.stack([box, floor])))
    pm = np.asarray(out.panoptic_map)
    assert (pm[0:6, 4:10] == 1).all() and (pm[0:6, 0:4] == 2).all() and (pm != 0).all()
    assert {s.id: s.area for s in out.segments} == {1: 36, 2: 364}


# -- frame sources ---------------------------------------------------------------------------------


def write_video(path: Path, frames: int, size=(48, 64)) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for t in range(frames):
            image = np.full((*size, 3), 0, np.uint8)
            image[:, : 4 * t + 1] = 255  # a bar that grows with t: frames can be told apart
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_file_frames_are_selected_by_source_index(tmp_path):
    path = tmp_path / "bar.mp4"
    write_video(path, 12)
    source = open_frames(path, FrameSelection(every=3, start=1, end=11))
    assert source.name == "bar" and source.fps == 25.0 and source.total == 12 and source.expected == 4
    frames = list(source)
    assert [f.index for f in frames] == [1, 4, 7, 10]
    assert [round(f.time_s, 3) for f in frames] == [0.04, 0.16, 0.28, 0.4]
    widths = [int((f.image[24, :, 0] > 128).sum()) for f in frames]
    assert widths == [5, 17, 29, 41]
    assert [f.index for f in open_frames(path, FrameSelection(max_frames=2))] == [0, 1]
    assert all(not f.image.flags.writeable for f in frames)


def test_folder_frames_are_in_natural_order_and_globs_work(clip):
    names = [f.index for f in open_frames(clip["frames"], FrameSelection(start=8))]
    assert names == [8, 9, 10, 11]
    first = next(iter(open_frames(clip["frames"], FrameSelection(start=10, max_frames=1))))
    assert np.array_equal(first.image, video_clip.frame(10))  # frame_10 after frame_9, not after frame_1
    globbed = open_frames(str(clip["frames"] / "frame_1*.png"))
    assert [np.array_equal(f.image, video_clip.frame(t)) for f, t in zip(globbed, [1, 10, 11])] == [True] * 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.mp4", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no frame images"),
        (lambda p: Image.new("RGB", (8, 8)).save(p / "one.png") or p / "one.png", "is a single image, not a video"),
        (lambda p: [(p / "junk.mp4").write_bytes(b"not a video at all" * 10), p / "junk.mp4"][1], "not a video FFmpeg can read"),
        (lambda p: str(p / "nothing-*.png"), "matches no file"),
        (lambda p: "/dev/null", "is not a regular file or folder"),
    ],
)
def test_bad_video_inputs_are_refused_with_the_fix(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        open_frames(make(tmp_path))


@pytest.mark.parametrize("fps", [0, -5, float("nan"), float("inf"), True])
def test_a_frame_rate_must_be_finite_and_positive(clip, fps):
    with pytest.raises(InputError, match=r"--fps \(fps=\) must be a finite number > 0"):
        open_frames(clip["frames"], fps=fps)


def test_a_truncated_video_is_reported_and_an_undecodable_one_refused(tmp_path):
    import av

    path = tmp_path / "whole.mkv"
    with av.open(str(path), mode="w") as container:  # FFV1: every frame a keyframe, so a cut file still decodes its head
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(video_clip.frame(t), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])
    source = open_frames(tmp_path / "cut.mkv")
    frames = list(source)
    assert 0 < len(frames) < 7
    assert source.shortfall() == (
        f"{tmp_path / 'cut.mkv'} declares a duration of 0.80 s (about 8 frames) but only {len(frames)} could be decoded: the "
        "file may be truncated or damaged (the frames after it are missing from the results)"
    )
    whole = open_frames(path)
    assert len(list(whole)) == 8 and whole.shortfall() == ""
    limited = open_frames(path, FrameSelection(max_frames=3))
    assert len(list(limited)) == 3 and limited.shortfall() == ""


def test_frames_of_another_size_are_refused_naming_the_frame(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "0.png")
    Image.new("RGB", (32, 48)).save(folder / "1.png")
    # Refused when the folder is opened (from the image headers), before any frame is processed.
    with pytest.raises(InputError, match=r"frame 1 \(1.png\) is 32x48 but frame 0.png is 64x48: all frames of a video must have one size"):
        open_frames(folder)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, r"--every \(every=\) must be an integer >= 1, got 0"),
        ({"start": -1}, r"--start \(start=\) must be an integer >= 0"),
        ({"start": 5, "end": 5}, r"--end \(end=\) must be an integer greater than --start \(5\)"),
        ({"max_frames": 0}, r"--max-frames \(max_frames=\) must be an integer >= 1"),
    ],
)
def test_bad_frame_selections_name_the_flag(kwargs, message):
    with pytest.raises(InputError, match=message):
        FrameSelection(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"keyframe_every": 0}, "--keyframe-every"), ({"match_iou": 0.0}, "--match-iou"), ({"max_unseen": -1}, "--max-unseen")],
)
def test_bad_tracking_options_name_the_flag(kwargs, message):
    with pytest.raises(InputError, match=message):
        TrackingOptions(**kwargs)


# -- resume and the output folder ------------------------------------------------------------------


def test_a_stopped_run_resumes_after_its_last_keyframe_with_the_same_result(clip, tmp_path):
    whole = tmp_path / "whole"
    run(oracle_pipeline(clip), clip, whole, keyframe_every=4, max_unseen=2)
    stopped = tmp_path / "stopped"
    pipe = oracle_pipeline(clip)
    vocab = pipe.vocabulary(CLASSES, STUFF)
    output = VideoOutput(stopped, {"test": 1})
    for item in segment_video(pipe, open_frames(clip["frames"], name="clip"), vocab, TrackingOptions(keyframe_every=4, max_unseen=2)):
        output.write(item)
        if item.index == 6:
            break  # the process dies after frame 6
    output.close()  # (as its death would: the folder's lock goes with the process)
    again = VideoOutput(stopped, {"test": 1})
    resume = again.resume_point(vocab)
    assert resume is not None and resume.index == 4
    pipe = oracle_pipeline(clip)
    tracker = pipe.component("tracker")
    items = list(segment_video(pipe, open_frames(clip["frames"], name="clip"), vocab, TrackingOptions(keyframe_every=4, max_unseen=2), resume=resume))
    # Three tracker calls: window 4-8 forward and backward (the ground-truth tracker opts in to
    # bidirectional runs), window 8-11 forward only (no keyframe after it to come back from).
    assert [i.index for i in items] == [5, 6, 7, 8, 9, 10, 11] and tracker.calls == 3
    for item in items:
        again.write(item)
    again.finish(items[-1].book, open_frames(clip["frames"], name="clip"))
    for name in ("panoptic.json", "tracks.csv", "tracks.json"):
        assert (stopped / name).read_text() == (whole / name).read_text(), name
    for t in range(12):
        assert (stopped / "panoptic" / f"{t:06d}.png").read_bytes() == (whole / "panoptic" / f"{t:06d}.png").read_bytes()


def test_an_output_folder_of_another_run_is_refused(clip, tmp_path):
    run(oracle_pipeline(clip, tracker="hold"), clip, tmp_path / "out", keyframe_every=1)  # settings {"test": 1}
    with pytest.raises(InputError, match=r"holds a video run with other settings \(they differ in every: 2 now, - in the folder; "
                       r"test: - now, 1 in the folder\)"):
        VideoOutput(tmp_path / "out", {"every": 2})
    assert VideoOutput(tmp_path / "out", {"test": 1}).finished
    fresh = VideoOutput(tmp_path / "out", {"every": 2}, overwrite=True)
    assert not fresh.finished and sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "panoptic.json").write_text("{}")
    with pytest.raises(InputError, match=r"not a video run of ovpanoptic \(panoptic.json without .video/\)"):
        VideoOutput(tmp_path / "batch", {})
    (tmp_path / "pngs" / "panoptic").mkdir(parents=True)
    (tmp_path / "pngs" / "panoptic" / "000000.png").write_bytes(b"someone's")
    with pytest.raises(InputError, match=r"not a video run of ovpanoptic \(panoptic without .video/\)"):
        VideoOutput(tmp_path / "pngs", {})


# -- the tracker contract --------------------------------------------------------------------------


def test_a_tracker_that_returns_no_iterable_is_named(clip):
    pipe = oracle_pipeline(clip, tracker="not-iterable")
    with pytest.raises(ComponentError, match=r"tracker 'not-iterable' .* it returned NoneType, which cannot be iterated") as info:
        list(segment_video(pipe, open_frames(clip["frames"]), pipe.vocabulary(CLASSES, STUFF), TrackingOptions(keyframe_every=3)))
    assert "write it as a generator" in str(info.value)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("short", r"it yielded 1 items for a window of 4 frames \(expected 3\)"),
        ("foreign", r"track ids \[999\] that were not seeded"),
        ("type", "it yielded dict for frame 1 of the window, not TrackMasks"),
        ("raise", "raised RuntimeError: lost the model"),
        ("none", "it yielded NoneType for frame 1 of the window, not TrackMasks"),
    ],
)
def test_a_tracker_that_breaks_the_contract_is_named(clip, mode, message, monkeypatch):
    monkeypatch.setattr(BadTracker, "mode", mode)
    pipe = oracle_pipeline(clip, tracker="bad")
    vocab = pipe.vocabulary(CLASSES, STUFF)
    with pytest.raises(ComponentError, match=message) as info:
        list(segment_video(pipe, open_frames(clip["frames"]), vocab, TrackingOptions(keyframe_every=3)))
    assert "tracker 'bad'" in str(info.value) and "VideoPlugins" in str(info.value)


# -- the CLI ---------------------------------------------------------------------------------------


def oracle_toml(clip, tmp_path) -> Path:
    gt = f'gt_json = "{clip["gt_json"]}"\ngt_dir = "{clip["gt_dir"]}"\nimages_dir = "{clip["frames"]}"\n'
    path = tmp_path / "oracle.toml"
    path.write_text(
        '[pipeline]\nproposal_generator = "oracle"\nclassifier = "oracle"\nfuser = "detectron2"\ntracker = "hold"\n'
        f'max_side = 0\ndevice = "cpu"\n[proposal_generator.oracle]\n{gt}[classifier.oracle]\n{gt}'
        "[fuser.detectron2]\nstuff_area_thresh = 0\n"
    )
    return path


def test_segment_video_cli_writes_the_documented_files(clip, tmp_path, capsys):
    import av

    out = tmp_path / "out"
    argv = ["segment-video", str(clip["frames"]), "--classes", CLASSES, "--stuff", STUFF, "--config", str(oracle_toml(clip, tmp_path)),
            "--keyframe-every", "1", "--match-iou", "0.2", "--every", "2", "--fps", "5", "-o", str(out)]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "6 frame(s) of frames segmented (6 keyframes)" in said and "4 thing track(s), 2 stuff class(es)" in said
    assert sorted(p.name for p in out.iterdir()) == [".video", "overlay.mp4", "panoptic", "panoptic.json", "tracks.csv", "tracks.json"]
    assert sorted(p.name for p in (out / "panoptic").iterdir()) == [f"{t:06d}.png" for t in range(0, 12, 2)]
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height, len(decoded)) == (64, 48, 6)
        assert float(stream.average_rate) == 2.5  # 5 fps, every 2nd frame
    assert main(argv) == 0
    assert "already holds this video's results" in capsys.readouterr().out
    assert main([*argv[:-2], "--every", "3", "-o", str(out)]) == 2
    assert "differ in selection.every: 3 now, 2 in the folder" in capsys.readouterr().err
    assert main([*argv[:-2], "--fps", "25", "-o", str(out)]) == 2  # times would no longer match the frames written
    assert "differ in fps: 25.0 now, 5.0 in the folder" in capsys.readouterr().err


def test_segment_video_cli_refuses_bad_input_before_writing(clip, tmp_path, capsys):
    out = tmp_path / "out"
    config = str(oracle_toml(clip, tmp_path))
    assert main(["segment-video", str(tmp_path / "nope.mp4"), "--classes", CLASSES, "--config", config, "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["segment-video", str(clip["frames"]), "--classes", CLASSES, "--config", config, "--keyframe-every", "0", "-o", str(out)]) == 2
    assert "--keyframe-every must be an integer >= 1" in capsys.readouterr().err
    assert main(["segment-video", str(clip["frames"]), "--classes", CLASSES, "--config", config, "--tracker", "sam3", "-o", str(out)]) == 2
    assert "tracker 'sam3' is not provided" in capsys.readouterr().err
    assert not out.exists()


def test_without_scipy_the_video_loop_says_what_to_install(clip, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    pipe = oracle_pipeline(clip)
    with pytest.raises(Exception, match=r"pip install 'ovpanoptic\[video\]' \(or pip install scipy\)") as info:
        next(segment_video(pipe, open_frames(clip["frames"]), pipe.vocabulary(CLASSES, STUFF)))
    assert type(info.value).__name__ == "MissingDependencyError"


def test_pipeline_segment_video_streams_the_selected_frames(clip):
    pipe = oracle_pipeline(clip, tracker="hold")
    frames = pipe.segment_video(clip["frames"], pipe.vocabulary(CLASSES, STUFF), keyframe_every=2, every=3, start=1, max_frames=3)
    first = next(frames)
    assert (first.index, first.keyframe, round(first.time_s, 3)) == (1, True, 0.1)
    assert [(f.index, f.keyframe) for f in frames] == [(4, False), (7, True)]
    with pytest.raises(InputError, match=r"--every \(every=\) must be an integer >= 1"):
        pipe.segment_video(clip["frames"], "box", every=0)
    with pytest.raises(InputError, match="a video input is a path .*, got ndarray"):
        pipe.segment_video(np.zeros((4, 8, 8, 3), np.uint8), "box")


def test_a_run_that_fails_before_its_first_frame_leaves_no_folder(clip, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment-video", str(clip["frames"]), "--classes", CLASSES, "--stuff", STUFF, "--config", str(oracle_toml(clip, tmp_path)),
            "--start", "50", "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "it has 12 frame(s) and --start is 50; lower --start" in err
    assert not out.exists()


def test_several_videos_get_folder_names_that_do_not_depend_on_their_order(tmp_path, capsys):
    from ovpanoptic.engines.video import video_folders

    names = lambda inputs: {i: j.outdir.name for i, j in zip(inputs, video_folders(inputs, tmp_path))}  # noqa: E731
    inputs = ["/data/day1/clip", "/data/day2/clip", "/data/other.mp4"]
    assert names(inputs) == {"/data/day1/clip": "day1-clip", "/data/day2/clip": "day2-clip", "/data/other.mp4": "other"}
    assert names(inputs[::-1]) == names(inputs)
    twins = names(["/a/v/clip", "/b/v/clip"])
    assert twins["/a/v/clip"].startswith("v-clip-") and twins["/a/v/clip"] != twins["/b/v/clip"]
    assert video_folders(["/x/clip.mp4"], tmp_path)[0].outdir == tmp_path
    with pytest.raises(InputError, match="is given twice: give each video once"):
        video_folders(["/x/clip.mp4", "/x/clip.mp4"], tmp_path)


# -- one run per folder; every frame checked before the first is processed ------------------------


def test_image_batches_and_video_runs_refuse_each_others_folders(clip, tmp_path, capsys):
    """segment-video into an image batch's folder, and segment into a video run's, are refused
    (exit 2, nothing changed); --overwrite replaces the other kind's results, and leaves the
    user's own files alone."""
    config = str(oracle_toml(clip, tmp_path))
    out = tmp_path / "out"
    image_run = ["segment", str(clip["frames"]), "--classes", CLASSES, "--stuff", STUFF, "--config", config, "--no-progress", "-o", str(out)]
    video_run = ["segment-video", str(clip["frames"]), "--classes", CLASSES, "--stuff", STUFF, "--config", config,
                 "--keyframe-every", "1", "--no-overlay", "--no-progress", "-o", str(out)]
    assert main(image_run) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(video_run) == 2
    err = capsys.readouterr().err
    assert f"{out} holds the results of an image batch ('ovpanoptic segment', ovpanoptic-manifest.jsonl)" in err
    assert "pass --overwrite to replace the batch's results" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    assert main([*video_run, "--overwrite"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [".video", "notes.txt", "panoptic", "panoptic.json", "tracks.csv", "tracks.json"]
    assert sorted(p.name for p in (out / "panoptic").iterdir()) == [f"{t:06d}.png" for t in range(12)]  # the video's frames only
    video_files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    assert main(image_run) == 2
    err = capsys.readouterr().err
    assert f"{out} holds a video run of 'ovpanoptic segment-video'" in err
    assert "add --overwrite to replace the video's results" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == video_files

    assert main([*image_run, "--overwrite"]) == 0
    capsys.readouterr()
    assert not (out / ".video").exists() and not (out / "tracks.csv").exists() and (out / "notes.txt").read_text() == "mine"
    images = json.loads((out / "panoptic.json").read_text())["images"]
    assert all("frame_index" not in i for i in images) and len(images) == 12  # the image batch's JSON, whole


def test_a_video_run_waits_for_no_one_while_another_run_holds_its_folder(clip, tmp_path, capsys):
    from ovpanoptic.folderlock import FolderLock

    out = tmp_path / "out"
    argv = ["segment-video", str(clip["frames"]), "--classes", CLASSES, "--stuff", STUFF, "--config", str(oracle_toml(clip, tmp_path)),
            "--keyframe-every", "1", "--no-overlay", "--no-progress", "-o", str(out)]
    with FolderLock.acquire(out):
        assert main(argv) == 2
        assert main([*argv, "--overwrite"]) == 2
        assert main(["segment", str(clip["frames"]), "--classes", CLASSES, "--config", str(oracle_toml(clip, tmp_path)), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"another ovpanoptic run is writing into {out}: wait for it") == 3
    assert sorted(p.name for p in out.iterdir()) == []
    assert main(argv) == 0  # released: the folder is free again


def test_every_frame_of_a_folder_is_checked_before_the_first_is_processed(clip, tmp_path, capsys):
    import shutil

    frames = tmp_path / "frames"
    shutil.copytree(clip["frames"], frames)
    names = [f"frame_{t}.png" for t in range(12)]
    (frames / names[9]).write_text("not an image, whatever its name says")
    out = tmp_path / "out"
    argv = ["segment-video", str(frames), "--classes", CLASSES, "--stuff", STUFF, "--config", str(oracle_toml(clip, tmp_path)),
            "--keyframe-every", "1", "--no-overlay", "--no-progress", "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"frame 9 ({names[9]}) in {frames} is not an image file Pillow can read" in err and "nothing was processed" in err
    assert not out.exists()
    # a JPEG whose EXIF orientation turns it a quarter turn is read 48x64, not 64x48: refused up front too
    rotated = Image.open(clip["frames"] / names[9]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    (frames / names[9]).unlink()
    rotated.save(frames / (Path(names[9]).stem + ".jpg"), exif=exif.tobytes())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"frame 9 ({Path(names[9]).stem}.jpg) is 48x64 but frame {names[0]} is 64x48 (as its EXIF orientation turns it)" in err
    assert not out.exists()


def test_a_run_that_stops_after_writing_frames_exits_1_and_resumes(clip, tmp_path, capsys):
    import shutil

    frames = tmp_path / "frames"
    shutil.copytree(clip["frames"], frames)
    names = [f"frame_{t}.png" for t in range(12)]
    whole = (frames / names[8]).read_bytes()
    (frames / names[8]).write_bytes(whole[: len(whole) // 2])  # a valid header, cut-off pixels: found when decoded
    out = tmp_path / "out"
    argv = ["segment-video", str(frames), "--classes", CLASSES, "--stuff", STUFF, "--config", str(oracle_toml(clip, tmp_path)),
            "--keyframe-every", "4", "--no-overlay", "--no-progress", "-o", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: frames stopped after 5 frame(s) written into" in err and "frame 8" in err
    assert "The frames written are kept; fix this and run the same command again to resume after the last keyframe written" in err
    assert sorted(p.name for p in (out / "panoptic").iterdir()) == [f"{t:06d}.png" for t in range(5)]
    (frames / names[8]).write_bytes(whole)
    assert main(argv) == 0
    assert "resuming after frame 4" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "panoptic").iterdir()) == [f"{t:06d}.png" for t in range(12)]


def test_the_keyframe_interval_is_bounded_because_a_window_is_held_in_memory(clip, tmp_path, capsys):
    from ovpanoptic.video.tracks import MAX_KEYFRAME_EVERY

    assert TrackingOptions(keyframe_every=MAX_KEYFRAME_EVERY).keyframe_every == 300
    out = tmp_path / "out"
    argv = ["segment-video", str(clip["frames"]), "--classes", CLASSES, "--config", str(oracle_toml(clip, tmp_path)),
            "--keyframe-every", "1000000000", "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--keyframe-every must be at most 300, got 1000000000: the tracker holds the K + 1 frames from one keyframe" in err
    assert not out.exists()


# -- id integrity (issue 26) -----------------------------------------------------------------------

PALLET_CATEGORIES = [{"id": 1, "name": "pallet", "isthing": 1}, {"id": 2, "name": "person", "isthing": 1}, {"id": 3, "name": "floor", "isthing": 0}]
BROWN, BLUE = (160, 110, 50), (40, 60, 220)


def run_scene(scene, tmp_path, tracker="ground-truth", classes="pallet, person, floor", **options):
    pipe = oracle_pipeline(scene, tracker=tracker)
    vocab = pipe.vocabulary(classes, "floor")
    source = open_frames(scene["frames"], name="scene")
    out = tmp_path / "out"
    output = VideoOutput(out, {"test": 1})
    items = []
    for item in segment_video(pipe, source, vocab, TrackingOptions(**options)):
        output.write(item)
        items.append(item)
    output.finish(items[-1].book, source)
    output.close()
    rows = [(r["id"], r["class"], r["first_frame"], r["last_frame"], r["frames_seen"], r["ended"], r["class_changes"])
            for r in csv.DictReader((out / "tracks.csv").open())]
    data = json.loads((out / "panoptic.json").read_text())
    classes_by_frame = {a["image_id"]: {s["id"]: s["category_id"] for s in a["segments_info"] if s["category_id"] != 3} for a in data["annotations"]}
    return items, rows, classes_by_frame, out


@pytest.mark.parametrize("person_colour", [BLUE, BROWN], ids=["looks-different", "looks-the-same"])
def test_a_person_on_the_spot_a_pallet_left_gets_its_own_track(tmp_path, person_colour):
    """Issue 26: a pallet (frames 0-14) is picked up, a person steps onto the same spot (frames
    20-49); oracle keyframes every 10 frames, a perfect tracker. The lost pallet track is not
    continued by the person (another class: no re-identification, whatever the features say), so
    there are two tracks with the right class in every frame, and nothing to flag."""
    scene = write_scene(
        tmp_path / "clip", 50,
        # (the person stands 1 px lower: the oracle recognises frames by their pixels, which must differ)
        lambda t: ([(11, 1, 20, 20, 12, BROWN)] if t < 15 else []) + ([(12, 2, 20, 21, 12, person_colour)] if t >= 20 else []),
        PALLET_CATEGORIES,
    )
    items, rows, classes, out = run_scene(scene, tmp_path, keyframe_every=10)
    assert rows == [
        ("1", "pallet", "0", "14", "15", "True", "0"),  # missed on keyframes 20 and 30: ended at 30 (max_missed 1)
        ("2", "floor", "0", "49", "50", "False", "0"),
        ("3", "person", "20", "49", "30", "False", "0"),
    ]
    assert classes == {t: ({1: 1} if t < 15 else {} if t < 20 else {3: 2}) for t in range(50)}
    # The streamed results say the same.
    assert [{s.id: s.category_id for s in i.result.segments if s.isthing} for i in items] == [classes[t] for t in range(50)]
    report = evaluate_video(scene["gt_json"], scene["gt_dir"], out / "panoptic.json", out / "panoptic")
    assert report.vpq.all == 1.0 and report.stq.overall.stq == 1.0
    assert report.consistency.class_changes == () and report.consistency.issues == ()


def test_a_class_change_inside_a_track_is_recorded_and_reported_by_the_consistency_check(tmp_path, capsys):
    """A box classified 'ball' on its first keyframe and 'box' on the next two: one object (its
    features agree), so one track; the vote flips at frame 8 and the record shows it: frames 0-7
    carry 'ball', frames 8-11 'box' (a later vote never rewrites earlier frames), the tracks table
    has the change, and eval-video's consistency check reports it."""
    scene = write_scene(tmp_path / "clip", 12, lambda t: [(11, 1, 10 + t, 20, 12, BROWN)], PALLET_CATEGORIES)
    pipe = oracle_pipeline(scene, classifier="noisy-oracle", tracker="ground-truth")
    # The noisy oracle calls every category-1 object category 2 on the frames in flip: 'person' on keyframe 0.
    pipe.component("classifier").flip = {image_digest(np.asarray(Image.open(scene["frames"] / "frame_0.png").convert("RGB")))}
    vocab = pipe.vocabulary("pallet, person, floor", "floor")
    out = tmp_path / "out"
    output = VideoOutput(out, {"test": 1})
    items = []
    for item in segment_video(pipe, open_frames(scene["frames"], name="scene"), vocab, TrackingOptions(keyframe_every=4)):
        output.write(item)
        items.append(item)
    output.finish(items[-1].book, open_frames(scene["frames"], name="scene"))
    output.close()
    data = json.loads((out / "panoptic.json").read_text())
    assert [[s["category_id"] for s in a["segments_info"] if s["id"] == 1] for a in data["annotations"]] == [[2]] * 8 + [[1]] * 4
    tracks = json.loads((out / "tracks.json").read_text())
    assert (tracks[0]["id"], tracks[0]["class"], tracks[0]["class_changes"]) == (1, "pallet", [{"frame": 8, "from": "person", "to": "pallet"}])
    assert main(["eval-video", "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic")]) == 0
    table = capsys.readouterr().out
    assert "0 consecutive-frame IoU(s) below 50.0%, 1 class change(s)" in table
    assert "scene        1          7->8  person -> pallet" in table


@pytest.mark.parametrize(("colour", "expected"), [(BROWN, "same id"), (BLUE, "new id")])
def test_an_object_that_leaves_and_reenters_keeps_its_id_only_when_its_features_match(tmp_path, colour, expected):
    """A pallet drives out through the right edge (last seen on frame 4, a 4 px sliver) and comes
    back on frame 14 at the same place. On keyframe 16 the tracker has lost it; it is re-identified
    (its id kept) when the detection covers where it was last seen, has its class and its image
    features (the oracle's colour histogram) match; a pallet of another colour gets a new id."""

    def objects(t):
        if t <= 5:
            return [(11, 1, 44 + 4 * t, 20, 10, BROWN)]
        if t >= 14:
            return [(11 if colour == BROWN else 12, 1, 56 - 3 * (t - 16), 20, 10, colour)]
        return []

    scene = write_scene(tmp_path / "clip", 24, objects, PALLET_CATEGORIES)
    items, rows, classes, _ = run_scene(scene, tmp_path, keyframe_every=4, max_missed=5, max_unseen=30)
    if expected == "same id":
        assert rows == [("1", "pallet", "0", "23", "13", "False", "0"), ("2", "floor", "0", "23", "24", "False", "0")]
        assert [sorted(c) for c in classes.values()] == [[1]] * 5 + [[]] * 11 + [[1]] * 8
    else:
        assert rows == [
            ("1", "pallet", "0", "4", "5", "False", "0"),
            ("2", "floor", "0", "23", "24", "False", "0"),
            ("3", "pallet", "16", "23", "8", "False", "0"),
        ]
    # Without the classifier's features there is no evidence: a new id either way.
    book = TrackBook(VOCAB, TrackingOptions(max_missed=5))
    book.keyframe(0, result_of({1: (1, 0.9)}, {1: (16, 0, 20, 10)}), None, {1: np.ones(4, np.float32)})
    book.tracked(1, masks_of({1: (0, 0, 0, 0)}))  # the tracker lost it
    again = book.keyframe(2, result_of({5: (1, 0.9)}, {5: (14, 0, 20, 10)}), masks_of({1: (0, 0, 0, 0)}))
    assert [s.id for s in again.segments] == [2]


# -- bidirectional propagation ------------------------------------------------------------------------


def test_fusing_the_two_passes_takes_uncovered_parts_from_the_backward_pass_and_no_id_before_its_birth():
    """``fuse_bidirectional`` on 1 x 6 maps: stuff 9, things 1 (alive on both keyframes), 2 (born on
    the next keyframe: not allowed) and 3 (forward only)."""
    from ovpanoptic.video.tracks import fuse_bidirectional

    forward = np.array([[1, 1, 9, 9, 0, 3]])
    backward = np.array([[1, 1, 1, 2, 9, 9]])
    things, allowed = {1, 2, 3}, {1, 9}
    # Near the earlier keyframe (offset 2 of 10): agreeing pixels stay; the part of 1 the forward pass
    # gave to held stuff comes from the backward pass; 2 never appears; void takes the backward stuff;
    # the forward thing 3 stays over the backward stuff.
    assert fuse_bidirectional(forward, backward, 2, 10, allowed, things).tolist() == [[1, 1, 1, 9, 9, 3]]
    # Nearer the next keyframe: the same (thing against stuff is not decided by distance).
    assert fuse_bidirectional(forward, backward, 8, 10, allowed, things).tolist() == [[1, 1, 1, 9, 9, 3]]
    # Thing against thing, stuff against stuff: the nearer keyframe's pass.
    f2, b2 = np.array([[1, 3, 9, 8]]), np.array([[5, 5, 8, 9]])
    assert fuse_bidirectional(f2, b2, 3, 10, {5, 8, 9}, {1, 3, 5}).tolist() == [[1, 3, 9, 8]]
    assert fuse_bidirectional(f2, b2, 7, 10, {5, 8, 9}, {1, 3, 5}).tolist() == [[5, 5, 8, 9]]
    assert fuse_bidirectional(f2, b2, 5, 10, {5, 8, 9}, {1, 3, 5}).tolist() == [[1, 3, 9, 8]]  # halfway: forward
    with pytest.raises(ValueError, match=r"offset must be in \(0, 10\), got 10"):
        fuse_bidirectional(f2, b2, 10, 10, {5}, {1})


class TwoWayHold:
    """``hold`` that asks to be run backward too: each keyframe's masks, held forward and backward."""

    bidirectional = True

    def __init__(self, config=None, context=None) -> None:
        self.calls = []

    def track(self, frames, seeds, *, progress=None):
        self.calls.append(len(frames))
        for _ in frames[1:]:
            yield seeds


def test_a_bidirectional_run_takes_the_next_keyframe_near_it_and_keeps_every_id(clip, tmp_path):
    """The oracle clip (K = 4) with a tracker that holds masks, run forward only and both ways (its
    own default): keyframes and their ids are the same, each frame between shows only ids of the
    forward run or of the next keyframe, C (born on keyframe 4, id 6) is never drawn before it, and
    where the two passes agree nothing changes."""

    class Plugins:
        @hookimpl
        def register_trackers(self, register):
            register("two-way-hold", TwoWayHold)

    def run_with(bidirectional):
        config = oracle_pipeline(clip, tracker="two-way-hold").config
        pipe = Pipeline(config, registry=registry_with(VideoPlugins(), Plugins()))
        vocab = pipe.vocabulary(CLASSES, STUFF)
        options = TrackingOptions(keyframe_every=4, max_unseen=2, bidirectional=bidirectional)
        return list(segment_video(pipe, open_frames(clip["frames"], name="clip"), vocab, options)), pipe.component("tracker").calls

    one, calls_one = run_with(False)
    both, calls_both = run_with(None)
    assert calls_one == [5, 5, 4] and calls_both == [5, 4, 5, 4, 4]  # backward: the K frames from the next keyframe back
    assert [i.index for i in both] == [i.index for i in one] == list(range(12))

    for a, b in zip(one, both, strict=True):
        pa, pb = np.asarray(a.result.panoptic_map), np.asarray(b.result.panoptic_map)
        if a.keyframe:
            assert np.array_equal(pa, pb)
        assert set(np.unique(pb).tolist()) <= set(np.unique(pa).tolist()) | set(np.unique(np.asarray(one[(a.index // 4 + 1) * 4].result.panoptic_map)).tolist() if a.index < 8 else [])
        if a.index < 4:
            assert 6 not in pb
    # Here the passes agree wherever the backward one may speak (the stuff stands still, and D, the only
    # object alive on both keyframes of a window, too): the output is the forward run's, pixel for pixel.
    assert [t for t in range(12) if not np.array_equal(one[t].result.panoptic_map, both[t].result.panoptic_map)] == []


def test_the_folder_records_the_resolved_direction_so_the_default_and_its_flag_resume_each_other(clip, tmp_path, capsys):
    """Found by a tester: a default ``flow`` run (both ways, its default) and the same command with
    ``--bidirectional`` were "other settings" (null against true). The folder records the resolved value;
    the other direction is refused naming both values."""
    out = tmp_path / "out"
    argv = ["segment-video", str(clip["frames"]), "--classes", CLASSES, "--stuff", STUFF, "--config", str(oracle_toml(clip, tmp_path)),
            "--tracker", "flow", "--keyframe-every", "3", "--no-overlay", "--no-progress", "-o", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / ".video" / "settings.json").read_text())
    assert saved["tracking"]["bidirectional"] is True
    capsys.readouterr()
    assert main([*argv, "--bidirectional"]) == 0
    assert "other settings" not in capsys.readouterr().err
    assert main([*argv, "--no-bidirectional"]) == 2
    assert "they differ in tracking.bidirectional: false now, true in the folder" in capsys.readouterr().err
