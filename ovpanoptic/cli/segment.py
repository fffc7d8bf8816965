"""``ovpanoptic segment`` (images) and ``ovpanoptic segment-video``: each command's options beside the
function that runs it."""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..errors import InputError
from .common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    Say,
    Subcommands,
    add_vocabulary_options,
    config_options,
    engine_options,
    engine_pipeline,
    log,
    plugin_options,
    prepare_vocabulary,
    run_images,
)

__all__ = ["add_segment", "add_segment_video", "cmd_segment", "cmd_segment_video"]


def add_segment(sub: Subcommands) -> None:
    """``ovpanoptic segment``: its options; it runs :func:`cmd_segment`."""
    seg = sub.add_parser(
        "segment",
        parents=[config_options(), engine_options(), plugin_options()],
        help="segment images with typed class names",
        description="Segment image files, folders or glob patterns. Example: ovpanoptic segment "
        "photos/ --classes \"person, forklift, pallet|skid\" --stuff \"floor, shelf\" -o out/",
    )
    seg.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (their images) or glob patterns")
    add_vocabulary_options(seg.add_argument_group("vocabulary"))
    out = seg.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="OUTDIR", default="ovpanoptic-out", help="output folder (default: %(default)s)")
    out.add_argument(
        "--format",
        dest="formats",
        metavar="NAME",
        action="append",
        default=None,
        help="exporter to use (repeatable or comma-separated; default: pipeline.exporters of the config). "
        "'ovpanoptic plugins' lists exporters",
    )
    seg.add_argument(
        "--max-side", type=int, default=None, metavar="N", help="downscale images whose longer side exceeds N for "
        "processing (results are written at the original size); 0 = never"
    )
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="redo every image, replacing the results a previous batch left in OUTDIR (by default a batch "
        "resumes: images already done with the same settings are skipped)",
    )
    seg.add_argument("--no-progress", action="store_true", help="no progress bar")
    seg.set_defaults(handler=cmd_segment)


def _split_formats(values: Sequence[str] | None) -> list[str] | None:
    """The ``--format`` values, repeated or comma-separated, as one list (``None`` when none was given).

    :raises InputError: an empty name (``--format ''``, ``' '``, ``',,'``, ``'a,'``): it names the value
        and what to give instead (a blank value is no way to ask for the default exporters).
    """
    if values is None:
        return None
    names: list[str] = []
    for item in values:
        pieces = [v.strip() for v in item.split(",")]
        if not all(pieces):
            raise InputError(
                f"--format {item!r} holds an empty exporter name: give names such as --format coco-panoptic,cvat "
                "('ovpanoptic plugins' lists exporters), or leave --format out for the config's pipeline.exporters"
            )
        names.extend(pieces)
    return names


def cmd_segment(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Segment the images of ``INPUT`` into ``--output``; 1 when some failed or the batch stopped."""
    from ..imageio import collect_inputs

    requested = _split_formats(args.formats)
    overrides = list(args.overrides)
    if args.max_side is not None:
        overrides.append(f"pipeline.max_side={args.max_side}")
    pipe, engine = engine_pipeline(args, overrides)
    # Validate everything, and build every component (factories load no weights), before reading
    # or writing any image: a broken plugin is a start-up error (exit 2).
    vocab = pipe.vocabulary(args.classes, args.stuff, args.things, name=args.vocabulary)
    formats = requested or list(pipe.config.pipeline.exporters)
    pipe.build_components(formats)
    if not args.output.strip():
        raise InputError("the output folder is empty (-o ''): name a folder, e.g. -o out")
    inputs = collect_inputs(args.inputs)
    outdir = Path(args.output)

    from tqdm import tqdm

    if engine.options is None:  # Ray workers prepare their own
        prepare_vocabulary(pipe, vocab, args.no_progress or not err.isatty(), err)

    from ..engines.batch import ImageOutcome

    quiet_bar = args.no_progress or not err.isatty()
    bar = tqdm(total=len(inputs), unit="img", disable=quiet_bar, file=err)
    say = Say(out, err)

    def on_image(outcome: ImageOutcome) -> None:
        if outcome.status == "failed":
            say.err(f"error: {outcome.error}", bar)
        elif outcome.status == "done":
            log.info("%s: %d segments -> %s", outcome.path, outcome.segments, ", ".join(map(str, outcome.files)))
            if quiet_bar:
                say.out(f"{outcome.path}: {outcome.segments} segments, {outcome.timings.get('total', 0.0):.2f} s")
        bar.set_description(outcome.path.name[:30])
        bar.update(1)

    try:
        report = run_images(args, engine, pipe, vocab, inputs, outdir, formats, on_image)
    finally:
        bar.close()
    failed = report.failed
    done = report.done + report.skipped
    if report.stopped is not None:
        say.out(f"{done} of {len(inputs)} image(s) segmented into {outdir}")
        say.err(
            f"error: the batch stopped at {report.stopped.path}: {report.stopped.error}. The {done} image(s) done are kept; "
            "fix this and run the same command again to go on (finished images are skipped)"
        )
        return EXIT_SOME_FAILED
    already = f" ({report.skipped} done by an earlier run)" if report.skipped else ""
    say.out(f"{done} of {len(inputs)} image(s) segmented into {outdir}{already}")
    if failed:
        say.err(f"{len(failed)} failed:")
        for outcome in failed:
            say.err(f"  {outcome.error}")
        components = Counter(o.component for o in failed if o.component)
        for component, count in sorted(components.items()):
            say.err(f"{component} failed on {count} of {len(inputs)} image(s)")
        say.err("run the same command again to retry the failed image(s); finished ones are skipped")
        return EXIT_SOME_FAILED
    return EXIT_OK


def add_segment_video(sub: Subcommands) -> None:
    """``ovpanoptic segment-video``: its options; it runs :func:`cmd_segment_video`."""
    sv = sub.add_parser(
        "segment-video",
        parents=[config_options(), engine_options(), plugin_options()],
        help="segment a video with ids that stay the same across frames",
        description="Segment a video file, a folder of frames or a glob of frames: keyframes go through the image "
        "pipeline, the tracker (optical flow on a CPU, SAM 2's video predictor on CUDA: the device profile chooses) "
        "carries the segments between them, and a thing "
        "keeps its id (its segment id in every frame's PNG) while it is tracked. Example: ovpanoptic segment-video "
        "clip.mp4 --classes \"person, forklift, pallet\" --stuff \"floor, shelf\" -o out/",
    )
    sv.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="a video file (mp4, mov, webm, mkv, ...), a folder of frames, or a glob of "
        "frames; several videos are written into OUTDIR/<name> each (with --engine ray, one video per worker at a time)",
    )
    add_vocabulary_options(sv.add_argument_group("vocabulary"))
    frames = sv.add_argument_group("frames")
    frames.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame (default: %(default)s)")
    frames.add_argument("--start", type=int, default=0, metavar="I", help="first frame index (default: %(default)s)")
    frames.add_argument("--end", type=int, default=None, metavar="I", help="stop before this frame index (default: the end)")
    frames.add_argument("--max-frames", type=int, default=None, metavar="N", help="process at most N frames")
    frames.add_argument(
        "--fps", type=float, default=None, help="frame rate: of a folder of frames (default 10), or instead of a video's own "
        "(it then also sets each frame's time_s = index / fps)"
    )
    tracking = sv.add_argument_group("tracking")
    tracking.add_argument(
        "--keyframe-every", type=int, default=10, metavar="K", help="segment every K-th processed frame with the image "
        "pipeline, track the frames between (default: %(default)s; 1 = every frame; at most 300: a window of K + 1 "
        "frames is held in memory)"
    )
    tracking.add_argument("--match-iou", type=float, default=0.5, metavar="X", help="mask IoU for a keyframe detection to continue a track (default: %(default)s)")
    tracking.add_argument(
        "--max-unseen", type=int, default=20, metavar="N", help="end a track once it has been invisible on more than N processed "
        "frames in a row (default: %(default)s)"
    )
    tracking.add_argument(
        "--max-missed", type=int, default=1, metavar="N", help="end a track once more than N keyframes in a row had no detection "
        "for it (default: %(default)s)"
    )
    tracking.add_argument(
        "--reid-similarity", type=float, default=0.8, metavar="X", help="cosine similarity of the classifier's image features needed to "
        "re-identify a lost track, or to continue a track with a detection of another class (default: %(default)s)"
    )
    tracking.add_argument(
        "--bidirectional", action=argparse.BooleanOptionalAction, default=None, help="also run the tracker backward from each "
        "next keyframe and fuse both passes on the frames between (default: the tracker's own: on for flow, off for hold and "
        "sam2-video); one more tracker pass per window, and frames are written once the next keyframe is segmented"
    )
    tracking.add_argument("--track-stuff", action="store_true", help="hand stuff to the tracker too (default: stuff is held from the keyframe)")
    tracking.add_argument("--tracker", default=None, metavar="NAME", help="tracker component (default: pipeline.tracker, flow: optical flow, no model; sam2-video: SAM 2's video predictor, for GPUs; hold)")
    vout = sv.add_argument_group("output")
    vout.add_argument("-o", "--output", metavar="OUTDIR", default="ovpanoptic-video-out", help="output folder (default: %(default)s)")
    vout.add_argument("--video-id", default=None, metavar="ID", help="the video's id in panoptic.json (default: the file's stem or the folder's name)")
    vout.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    vout.add_argument(
        "--overwrite", action="store_true", help="start again, replacing a previous video run in OUTDIR (by default a stopped run resumes after its last keyframe)"
    )
    sv.add_argument("--max-side", type=int, default=None, metavar="N", help="downscale frames whose longer side exceeds N for processing")
    sv.add_argument("--no-progress", action="store_true", help="no progress bar")
    sv.set_defaults(handler=cmd_segment_video)


def cmd_segment_video(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Segment each video of ``INPUT`` (a folder of OUTDIR each when several); 1 when one failed or stopped."""
    from tqdm import tqdm

    from ..engines.video import VideoSettings, VideoSummary, run_videos, video_folders
    from ..video import FrameSelection, TrackingOptions

    overrides = list(args.overrides)
    if args.max_side is not None:
        overrides.append(f"pipeline.max_side={args.max_side}")
    if args.tracker is not None:
        overrides.append(f"pipeline.tracker={args.tracker!r}")
    pipe, engine = engine_pipeline(args, overrides)
    options = engine.options
    vocab = pipe.vocabulary(args.classes, args.stuff, args.things, name=args.vocabulary)
    tracking = TrackingOptions(
        keyframe_every=args.keyframe_every, match_iou=args.match_iou, max_unseen=args.max_unseen, max_missed=args.max_missed,
        track_stuff=args.track_stuff, reid_similarity=args.reid_similarity, bidirectional=args.bidirectional,
    )
    selection = FrameSelection(every=args.every, start=args.start, end=args.end, max_frames=args.max_frames)
    settings = VideoSettings(selection, tracking, fps=args.fps, overlay=not args.no_overlay, overwrite=args.overwrite)
    pipe.build_components([])
    pipe.component("tracker")
    if not args.output.strip():
        raise InputError("the output folder is empty (-o ''): name a folder, e.g. -o out")
    if args.video_id is not None and len(args.inputs) > 1:
        raise InputError("--video-id names one video: leave it out with several inputs (each is named after its file)")
    inputs = [str(Path(i).resolve()) if Path(i).exists() else i for i in args.inputs] if options is not None else list(args.inputs)
    jobs = video_folders(inputs, Path(args.output).resolve() if options is not None else Path(args.output))
    if args.video_id is not None:
        jobs = [dataclasses.replace(jobs[0], video_id=args.video_id)]
    quiet = args.no_progress or not err.isatty()
    say = Say(out, err)
    if options is None:
        prepare_vocabulary(pipe, vocab, quiet, err)
    single = len(jobs) == 1 and options is None
    bar = tqdm(total=None if single else len(jobs), unit="frame" if single else "video", disable=quiet, file=err)

    def progress(message: str, done: int, total: int) -> None:
        if message == "frame":
            bar.n = done
            bar.refresh()

    def on_start(job: Any, source: Any, resume: Any) -> None:
        if single:
            bar.total = source.expected
            bar.refresh()
        if resume is not None:
            say.out(f"{source.name}: resuming after frame {resume.index} (the last keyframe written into {job.outdir})")

    def on_video(summary: VideoSummary) -> None:
        if not single:
            bar.update(1)
        _say_video(summary, say, bar)

    try:
        if options is None:
            summaries = run_videos(pipe, vocab, jobs, settings, progress=progress if single else None, on_video=on_video, on_start=on_start)
        else:
            from ..engines.ray_engine import run_videos_ray

            summaries, _ = run_videos_ray(
                pipe, vocab, jobs, settings, options, on_video=on_video, disable_plugins=args.disable_plugin, config=engine.worker_config
            )
    finally:
        bar.close()
    failed = [s for s in summaries if s.status in ("failed", "stopped")]
    if len(jobs) > 1:
        say.out(f"{len(summaries) - len(failed)} of {len(jobs)} video(s) segmented into {args.output}")
    if failed:
        if len(jobs) == 1 and failed[0].status == "failed":
            raise InputError(failed[0].error)
        if len(jobs) == 1:
            return EXIT_SOME_FAILED  # stopped after writing frames: said by on_video
        say.err(f"{len(failed)} failed (errors above); fix what they say and run the same command again (finished videos are kept)")
        return EXIT_SOME_FAILED
    return EXIT_OK


def _say_video(summary: Any, say: Say, bar: Any) -> None:
    """One line per video of a ``segment-video`` job."""
    if summary.status == "failed":
        say.err(f"error: {summary.error}", bar)
        return
    if summary.status == "stopped":
        say.err(
            f"error: {summary.video_id} stopped after {summary.written} frame(s) written into {summary.outdir}: {summary.error}. "
            "The frames written are kept; fix this and run the same command again to resume after the last keyframe written",
            bar,
        )
        return
    if summary.status == "finished-before":
        say.out(f"{summary.outdir} already holds this video's results (same input and settings); pass --overwrite to redo it")
        return
    if summary.warning:
        say.err(f"warning: {summary.warning}", bar)
    this_run = f", {summary.written} in this run" if summary.resumed_after is not None else ""
    say.out(
        f"{summary.frames} frame(s) of {summary.video_id} segmented ({summary.keyframes} keyframes{this_run}) into {summary.outdir}: "
        f"{summary.things} thing track(s), {summary.stuff} stuff class(es)"
    )
