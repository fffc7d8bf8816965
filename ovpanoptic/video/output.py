"""The output folder of ``segment-video``: written frame by frame, resumable, finished at the end.

Layout of ``OUTDIR`` (one video per folder)::

    panoptic/000000.png ...   COCO-panoptic PNG per processed frame (id = R + 256 G + 256^2 B), named
                              by source frame index; a thing's segment id is its track id
    panoptic.json             COCO panoptic JSON for the whole video: "videos" (one entry), "images"
                              with video_id, frame_index, time_s and keyframe, "annotations" with
                              segments_info (each track's class as voted up to that frame: a later
                              vote never rewrites earlier frames), "categories"
    tracks.csv, tracks.json   one row per track: id, class (the final vote), kind, first/last frame,
                              frames seen, mean score, ended, class changes (tracks.json adds the
                              class votes and each change's frame)
    overlay.mp4               the frames with each segment drawn and labelled "class id" (H.264),
                              encoded as frames are written (a resumed run encodes it at the end)
    .video/                   work state: per-frame parts and the checkpoint after the last
                              keyframe; a run stopped half-way resumes from it

Every file is written atomically (:mod:`ovpanoptic.atomic`); the shared files are (re)written at
the end from the parts, so a run that stops leaves no half-written JSON.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text, check_output_folder
from ..constants import VOID_ID
from ..errors import ExportError, InputError, MissingDependencyError
from ..folderlock import FolderLock
from ..types import PanopticResult, Vocabulary
from .run import ResumePoint, VideoFrameResult
from .sources import FrameSource
from .tracks import TrackBook, TrackRecord

__all__ = ["STATE_DIR", "VIDEO_FILES", "VideoOutput", "holds_video_run", "remove_video_run"]

#: The work folder inside the output folder.
STATE_DIR = ".video"
#: Everything a video run writes into its folder (``--overwrite`` removes these, and nothing else).
VIDEO_FILES = ("panoptic", "panoptic.json", "tracks.csv", "tracks.json", "overlay.mp4", STATE_DIR)
#: The manifest of an image batch (:data:`ovpanoptic.engines.manifest.MANIFEST_NAME`; this layer
#: does not import the engines): a folder holding one is an image batch's.
_BATCH_MANIFEST = "ovpanoptic-manifest.jsonl"


def holds_video_run(outdir: str | Path) -> bool:
    """Whether ``outdir`` holds a video run (finished or not) of ``segment-video``."""
    return (Path(outdir) / STATE_DIR / "settings.json").is_file()


def remove_video_run(outdir: str | Path) -> None:
    """Remove the files a video run wrote into ``outdir`` (:data:`VIDEO_FILES`; others are left alone)."""
    for name in VIDEO_FILES:
        p = Path(outdir) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def _read_ids(path: Path) -> np.ndarray:
    """A PNG this folder holds, as its ``(H, W)`` int32 segment-id map."""
    from PIL import Image

    from ..formats import rgb_to_id

    with Image.open(path) as png:
        return rgb_to_id(np.asarray(png.convert("RGB"))).astype(np.int32)


def _png(ids: np.ndarray) -> bytes:
    from PIL import Image

    from ..formats import id_to_rgb

    buf = io.BytesIO()
    Image.fromarray(id_to_rgb(ids)).save(buf, format="PNG")
    return buf.getvalue()


#: A key one side of :func:`_differences` lacks.
_ABSENT = object()


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Where two JSON values differ, at most 8: each dotted path (``config.pipeline.tracker``) with both
    values (``"tracking.every: 2 now, 1 in the folder"``; long values shortened, absent ones ``-``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{prefix}{key}.")
        return out[:8]
    if old == new:
        return []
    return [f"{prefix.rstrip('.')}: {_short(new)} now, {_short(old)} in the folder"]



def _short(value: Any) -> str:
    if value is _ABSENT:
        return "-"
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _draw(image: np.ndarray, ids: np.ndarray, categories: Mapping[int, int], vocabulary: Vocabulary) -> np.ndarray:
    """``image`` with the id map ``ids`` drawn over it, each segment labelled ``"class id"`` (stuff:
    ``"class"``) with the class ``categories`` gives it; ids without a class are left undrawn."""
    from ..drawing import Overlay, compose, instance_rgb

    labels, colors = {}, {}
    result_labels: dict[int, tuple[int, float]] = {}
    present = [int(i) for i in np.unique(ids) if i != VOID_ID and int(i) in categories]
    for tid in present:
        category = vocabulary.by_id(categories[tid])
        labels[tid] = f"{category.name} {tid}" if category.isthing else category.name
        colors[tid] = instance_rgb(category.display_color, tid % 6 + 1) if category.isthing else category.display_color
        result_labels[tid] = (category.id, 1.0)
    ids = np.where(np.isin(ids, present), ids, VOID_ID).astype(np.int32)
    result = PanopticResult.from_map(ids, result_labels, vocabulary)
    return compose(image, result, labels, colors, Overlay(opacity=0.5))


def _segments(result: PanopticResult) -> list[dict[str, Any]]:
    return [
        {"id": s.id, "category_id": s.category_id, "isthing": s.isthing, "score": round(s.score, 6), "area": s.area, "bbox_xyxy": list(s.bbox_xyxy)}
        for s in result.segments
    ]


class VideoOutput:
    """Writes one video's results into ``outdir`` and resumes an interrupted run.

    :param outdir: the output folder (created).
    :param settings: what makes two runs the same (source, selection, tracking options, tracker,
        vocabulary, config); a folder holding a run with other settings is refused.
    :param overwrite: replace a previous run's files (only the files this layout names).
    :param lock: the folder's :class:`~ovpanoptic.folderlock.FolderLock`, when the caller took it
        already (the output then owns it); else the output takes it. Released by :meth:`close` (or
        when the process ends): no other run, image batch or video, writes into the folder meanwhile.
    :raises InputError: another run is writing into the folder; the folder holds another run, or
        other results, and ``overwrite`` is off; it holds an image batch (``segment``'s manifest).
    """

    def __init__(
        self, outdir: str | Path, settings: Mapping[str, Any], *, overwrite: bool = False, lock: FolderLock | None = None
    ) -> None:
        self.outdir = Path(outdir)
        self.settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
        self.state_dir = self.outdir / STATE_DIR
        self.png_dir = self.outdir / "panoptic"
        self._overlay_rate: Fraction | None = None
        self._overlay_failed = False
        self._encoder: tuple[Any, Any, Path, list[int]] | None = None
        check_output_folder(self.outdir)
        self._lock = lock if lock is not None else FolderLock.acquire(self.outdir)
        try:
            self._check(overwrite)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder (when this output took its lock); a folder it created and nothing
        was written into is removed. An overlay being encoded and not finished is dropped."""
        self._drop_overlay()
        self._lock.release(remove_if_empty=True)

    # -- the overlay video, encoded as frames arrive ---------------------------------------------

    def stream_overlay(self, fps: float, every: int = 1) -> None:
        """Encode ``overlay.mp4`` while frames are written (each frame drawn once, when it arrives:
        no second pass over the video), at ``fps / every`` frames per second. Call it before the
        first :meth:`write` of a run that starts at the video's first frame; :meth:`finish` moves
        the stream into place when it holds every frame written, and otherwise (a resumed run)
        encodes the overlay from the parts as before."""
        self._overlay_rate = Fraction(fps / every).limit_denominator(1001)

    def _drop_overlay(self) -> None:
        encoder = getattr(self, "_encoder", None)
        self._encoder = None
        if encoder is not None:
            container, _, path, _ = encoder
            try:
                container.close()
            except Exception:  # noqa: BLE001 - a half-written stream is removed below whatever its state
                pass
            path.unlink(missing_ok=True)

    def _encode(self, item: VideoFrameResult) -> None:
        """Draw ``item`` over its frame and add it to the overlay stream (opened at the first frame)."""
        if getattr(self, "_overlay_rate", None) is None or getattr(self, "_overlay_failed", False):
            return
        try:
            import av
        except ImportError:
            self._overlay_failed = True  # finish() says what to install
            return
        if self._encoder is None:
            h, w = item.result.image_size
            eh, ew = h - h % 2, w - w % 2  # yuv420p needs even sides
            path = self.state_dir / "overlay.part.mp4"
            container = av.open(str(path), mode="w")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=self._overlay_rate)
            stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "23", "preset": "veryfast"}
            self._encoder = (container, stream, path, [0])
        container, stream, _, count = self._encoder
        categories = {s.id: s.category_id for s in item.result.segments}
        drawn = _draw(np.asarray(item.image), np.asarray(item.result.panoptic_map), categories, item.book.vocabulary)
        eh, ew = stream.height, stream.width
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn[:eh, :ew]), format="rgb24")):
            container.mux(packet)
        count[0] += 1

    def __enter__(self) -> VideoOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, overwrite: bool) -> None:
        if (self.outdir / _BATCH_MANIFEST).exists():
            raise InputError(
                f"{self.outdir} holds the results of an image batch ('ovpanoptic segment', {_BATCH_MANIFEST}): a video "
                "run there would mix its files with the batch's. Choose another output folder with -o"
                + (", or remove the batch's results first" if overwrite else ", or pass --overwrite to replace the batch's results")
            )
        if overwrite:
            remove_video_run(self.outdir)
        saved = self._read_json(self.state_dir / "settings.json")
        foreign = [n for n in VIDEO_FILES if n != STATE_DIR and (self.outdir / n).exists()]
        if saved is None and foreign and not (foreign == ["panoptic"] and not any((self.outdir / "panoptic").iterdir())):
            raise InputError(
                f"{self.outdir} already holds results that are not a video run of ovpanoptic ({', '.join(foreign)} without "
                f"{STATE_DIR}/): choose another -o, or pass --overwrite to replace them"
            )
        if saved is not None and saved != self.settings:
            differ = _differences(saved, self.settings)
            raise InputError(
                f"{self.outdir} holds a video run with other settings (they differ in {'; '.join(differ)}): choose "
                "another -o, run the same command as before to resume it, or pass --overwrite to start again"
            )
        self._ready = saved is not None

    def _prepare(self) -> None:
        """Create the folders and record the settings, at the first frame written (a run that fails
        before any frame leaves no folder behind)."""
        if self._ready:
            return
        self.png_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "frames").mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.state_dir / "settings.json", json.dumps(self.settings, indent=1, sort_keys=True))
        self._ready = True

    @staticmethod
    def _read_json(path: Path) -> Any:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} is unreadable ({exc}): pass --overwrite to start the video again") from None

    @property
    def finished(self) -> bool:
        """Whether a previous run with these settings finished (``panoptic.json`` written)."""
        done = self._read_json(self.state_dir / "done.json")
        return bool(done) and (self.outdir / "panoptic.json").is_file()

    def resume_point(self, vocabulary: Vocabulary) -> ResumePoint | None:
        """The checkpoint of an interrupted run (the last keyframe written), or ``None``."""
        state = self._read_json(self.state_dir / "checkpoint.json")
        if state is None:
            return None
        index = int(state["index"])
        part = self._read_json(self.state_dir / "frames" / f"{index:06d}.json")
        png = self.png_dir / f"{index:06d}.png"
        if part is None or not png.is_file():
            return None
        ids = _read_ids(png)
        labels = {int(s["id"]): (int(s["category_id"]), float(s["score"])) for s in part["segments"]}
        result = PanopticResult.from_map(ids, labels, vocabulary)
        # Frames after the checkpoint are redone: drop their parts so a shorter redo leaves none behind.
        for f in (self.state_dir / "frames").glob("*.json"):
            if int(f.stem) > index:
                f.unlink()
                (self.png_dir / f"{f.stem}.png").unlink(missing_ok=True)
        return ResumePoint(index=index, state=state["book"], result=result)

    def write(self, item: VideoFrameResult) -> None:
        """Write one frame's PNG and part; after a keyframe, the checkpoint too."""
        stem = f"{item.index:06d}"
        try:
            self._prepare()
            atomic_write_bytes(self.png_dir / f"{stem}.png", _png(np.asarray(item.result.panoptic_map)))
            part = {
                "index": item.index,
                "time_s": round(item.time_s, 6),
                "keyframe": item.keyframe,
                "height": item.result.image_size[0],
                "width": item.result.image_size[1],
                "segments": _segments(item.result),
                "timings": {k: round(v, 6) for k, v in item.result.timings.items()},
            }
            atomic_write_text(self.state_dir / "frames" / f"{stem}.json", json.dumps(part))
            if item.keyframe:
                atomic_write_text(self.state_dir / "checkpoint.json", json.dumps({"index": item.index, "book": item.book.state()}))
            self._encode(item)
        except OSError as exc:
            raise ExportError(f"cannot write frame {item.index} into {self.outdir} ({exc.strerror or exc}); check the disk and permissions") from None

    def parts(self) -> list[dict[str, Any]]:
        """Every frame part written, by frame index."""
        if not (self.state_dir / "frames").is_dir():
            return []
        out = [json.loads(f.read_text(encoding="utf-8")) for f in (self.state_dir / "frames").glob("*.json")]
        return sorted(out, key=lambda p: p["index"])

    def finish(
        self,
        book: TrackBook,
        source: FrameSource,
        *,
        overlay: bool = True,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> list[Path]:
        """Write ``panoptic.json``, the tracks table and (optionally) the overlay video from the parts.

        Each segment's category is the one its frame was written with (its track's vote up to that
        frame: a later vote never rewrites earlier frames; each change is in the tracks table); its
        score is the track's mean score. PNGs are unchanged (they hold ids only).

        :return: the files written.
        """
        vocabulary = book.vocabulary
        records = {r.id: r for r in book.records()}
        parts = self.parts()
        if not parts:
            raise InputError(f"no frame was written into {self.outdir}")
        h, w = parts[0]["height"], parts[0]["width"]
        images, annotations = [], []
        for p in parts:
            segments = []
            for s in p["segments"]:
                rec = records.get(s["id"])
                category = s["category_id"]
                score = rec.score if rec is not None else s["score"]
                x0, y0, x1, y1 = s["bbox_xyxy"]
                segments.append(
                    {"id": s["id"], "category_id": category, "iscrowd": 0, "area": s["area"], "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score}
                )
            stem = f"{p['index']:06d}"
            images.append(
                {
                    "id": p["index"], "file_name": f"{source.name}/{stem}.jpg", "width": p["width"], "height": p["height"],
                    "video_id": source.name, "frame_index": p["index"], "time_s": p["time_s"], "keyframe": p["keyframe"],
                }
            )
            annotations.append({"image_id": p["index"], "file_name": f"{stem}.png", "segments_info": segments})
        data = {
            "info": {"description": f"ovpanoptic segment-video of {source.name}", "settings": self.settings},
            "videos": [{"id": source.name, "name": source.name, "fps": source.fps, "width": w, "height": h, "frames": len(parts)}],
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": c.id, "name": c.name, "supercategory": c.name, "isthing": int(c.isthing), "color": list(c.display_color)}
                for c in vocabulary.categories
            ],
        }
        files = [atomic_write_text(self.outdir / "panoptic.json", json.dumps(data))]
        files += self._write_tracks(list(records.values()), vocabulary, parts)
        if overlay:
            if self._encoder is not None and self._encoder[3][0] == len(parts):
                container, stream, path, _ = self._encoder
                for packet in stream.encode():
                    container.mux(packet)
                container.close()
                self._encoder = None
                path.replace(self.outdir / "overlay.mp4")
                files.append(self.outdir / "overlay.mp4")
            else:
                self._drop_overlay()
                files.append(self._overlay(book, source, parts, progress))
        atomic_write_text(self.state_dir / "done.json", json.dumps({"frames": len(parts)}))
        return files

    def _write_tracks(self, records: list[TrackRecord], vocabulary: Vocabulary, parts: list[dict[str, Any]]) -> list[Path]:
        times = {p["index"]: p["time_s"] for p in parts}
        rows = [
            {
                "id": r.id, "class": vocabulary.by_id(r.category_id).name, "kind": "thing" if r.isthing else "stuff",
                "first_frame": r.first_frame, "last_frame": r.last_frame, "first_time_s": times.get(r.first_frame),
                "last_time_s": times.get(r.last_frame), "frames_seen": r.frames_seen, "mean_score": r.score, "ended": r.ended,
                "class_changes": len(r.class_changes),
            }
            for r in records
        ]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        votes = {r.id: {vocabulary.by_id(c).name: {"keyframes": n, "score": s} for c, (n, s) in r.votes.items()} for r in records}
        changes = {
            r.id: [{"frame": f, "from": vocabulary.by_id(a).name, "to": vocabulary.by_id(b).name} for f, a, b in r.class_changes]
            for r in records
        }
        table = [{**row, "votes": votes[row["id"]], "class_changes": changes[row["id"]]} for row in rows]
        return [
            atomic_write_text(self.outdir / "tracks.csv", buf.getvalue()),
            atomic_write_text(self.outdir / "tracks.json", json.dumps(table, indent=1)),
        ]

    def _overlay(
        self,
        book: TrackBook,
        source: FrameSource,
        parts: list[dict[str, Any]],
        progress: Callable[[str, int, int], None] | None,
    ) -> Path:
        """Encode the overlay video from the parts (a resumed run): the source frames again
        (streamed), each PNG drawn over its frame with the classes its part recorded."""
        try:
            import av
        except ImportError:
            raise MissingDependencyError(
                "the overlay video needs PyAV: pip install 'ovpanoptic[video]' (or pip install av), or pass --no-overlay"
            ) from None
        vocabulary = book.vocabulary
        wanted = {p["index"]: {int(s["id"]): int(s["category_id"]) for s in p["segments"]} for p in parts}
        target = self.outdir / "overlay.mp4"
        tmp = self.outdir / f".overlay.{id(self)}.mp4"
        h, w = parts[0]["height"], parts[0]["width"]
        eh, ew = h - h % 2, w - w % 2  # yuv420p needs even sides
        try:
            with av.open(str(tmp), mode="w") as container:
                codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
                rate = Fraction(source.fps / source.selection.every).limit_denominator(1001)
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": "23", "preset": "veryfast"}
                done = 0
                for frame in source:
                    if frame.index not in wanted:
                        continue
                    ids = _read_ids(self.png_dir / f"{frame.index:06d}.png")
                    drawn = _draw(np.asarray(frame.image), ids, wanted[frame.index], vocabulary)
                    video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn[:eh, :ew]), format="rgb24")
                    for packet in stream.encode(video_frame):
                        container.mux(packet)
                    done += 1
                    if progress is not None:
                        progress("overlay video", done, len(parts))
                for packet in stream.encode():
                    container.mux(packet)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
