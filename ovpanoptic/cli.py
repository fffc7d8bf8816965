"""The ``ovpanoptic`` command line.

Exit codes: 0 success; 1 some inputs failed (an unreadable image, or a plugin component that
failed on it: each is reported, the batch goes on); 2 a usage, config, vocabulary or plugin error
(a plugin that cannot be loaded or registered, or whose component cannot be built: reported before
any output is written).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .constants import ANNOTATION_FORMATS, DEFAULT_MAX_PIXELS, DEFAULT_PRESET, DEMO_PRESET, DISABLE_PLUGINS_ENV
from .errors import AmbiguousNameError, InputError, OvpanopticError

__all__ = ["build_parser", "main"]

log = logging.getLogger("ovpanoptic.cli")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2


def _plugin_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("plugins")
    group.add_argument(
        "--disable-plugin",
        metavar="NAME",
        action="append",
        default=[],
        help=f"block a plugin by name (repeatable; also {DISABLE_PLUGINS_ENV}=a,b). "
        "Use it to get going again when a plugin fails to import",
    )
    parent.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    return parent


def _config_options(default_preset: str = DEFAULT_PRESET) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration")
    group.add_argument(
        "--config", metavar="NAME|PATH", default=None, help=f"preset name (see 'ovpanoptic presets') or TOML file; default: {default_preset}"
    )
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        dest="overrides",
        action="append",
        default=[],
        help="override one config value, e.g. --set pipeline.max_side=512 or "
        "--set proposal_generator.sam2.points_per_side=16 (repeatable)",
    )
    group.add_argument("--device", default=None, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    return parent


def _engine_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("engine (docs/scale.md)")
    group.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process, one image after another (default); ray: long-lived pipelines in Ray workers "
        "(pip install 'ovpanoptic[ray]')",
    )
    group.add_argument(
        "--address", metavar="auto|HOST:PORT", default=None,
        help="--engine ray: join this Ray cluster (auto: the one started on this machine with 'ray start'); "
        "default: start a Ray instance of its own on this machine for the run (never a running cluster)",
    )
    group.add_argument("--workers", type=int, default=None, metavar="N", help="--engine ray: pipelines to run (default: as many as the CPUs/GPUs allow)")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F", help="--engine ray: GPUs per worker, e.g. 1 or 0.5 (default: 0, CPU workers)")
    group.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="F", help="--engine ray: CPUs (and torch threads) per worker (default: %(default)s)")
    return parent


def _ray_options(args: argparse.Namespace) -> Any:
    """The :class:`RayOptions` of ``--engine ray``, or ``None`` for the local engine.

    :raises InputError: a Ray option given without ``--engine ray``, or out of range.
    """
    ray_only = {"--address": args.address is not None, "--workers": args.workers is not None,
                "--gpus-per-worker": args.gpus_per_worker != 0.0, "--cpus-per-worker": args.cpus_per_worker != 1.0}
    if args.engine != "ray":
        given = [name for name, on in ray_only.items() if on]
        if given:
            raise InputError(f"{', '.join(given)} applies to --engine ray: add --engine ray, or leave {given[0]} out")
        return None
    from .engines.ray_engine import RayOptions

    return RayOptions(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker)


@dataclasses.dataclass(frozen=True)
class _Engine:
    """The engine of a command: ``options`` ``None`` for the local one; for Ray, the workers'
    config (the user's device) while the driver's pipeline runs on the CPU (it segments nothing)."""

    options: Any = None
    worker_config: Any = None


def _engine_pipeline(args: argparse.Namespace, overrides: Sequence[str]) -> tuple[Any, _Engine]:
    """The command's pipeline and engine, every engine option checked before any work.

    :raises InputError: a Ray option without ``--engine ray``, or one that cannot work.
    """
    from .pipeline import Pipeline

    options = _ray_options(args)
    pipe = Pipeline(args.config, overrides=overrides, device=args.device, disable_plugins=args.disable_plugin)
    if options is None:
        return pipe, _Engine()
    from .engines.ray_engine import worker_config

    workers = worker_config(pipe.config, options)
    driver = Pipeline(pipe.config.with_overrides(["pipeline.device='cpu'"]), disable_plugins=args.disable_plugin)
    return driver, _Engine(options, workers)


def _run_images(
    args: argparse.Namespace, engine: _Engine, pipe: Any, vocab: Any, inputs: Sequence[Path], outdir: Path, formats: Sequence[str], on_image: Any
) -> Any:
    """Run a batch with the engine ``--engine`` chose (the local one, or Ray)."""
    if engine.options is None:
        from .engines.local import run_local

        return run_local(pipe, vocab, inputs, outdir, formats, overwrite=args.overwrite, on_image=on_image)
    from .engines.ray_engine import run_ray

    return run_ray(
        pipe, vocab, inputs, outdir, formats, engine.options, overwrite=args.overwrite, on_image=on_image,
        disable_plugins=args.disable_plugin, config=engine.worker_config,
    )


def _add_vocabulary_options(group: Any) -> None:
    """``--classes``, ``--stuff``, ``--things`` and ``--vocabulary`` (read by :func:`_vocabulary_from_args`)."""
    group.add_argument(
        "--classes",
        default="",
        help="comma-separated class names; '|' separates synonyms (\"tv|television\"). Unflagged names "
        "are stuff when the built-in stuff lexicon knows them, else things",
    )
    group.add_argument("--stuff", default="", help="names that are stuff (amorphous regions: \"road, sky\")")
    group.add_argument("--things", default="", help="names that are things (countable objects), overriding the lexicon")
    group.add_argument(
        "--vocabulary", metavar="NAME", default=None, help="a named vocabulary instead of --classes (see 'ovpanoptic vocabularies')"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    plugin_opts = _plugin_options()
    config_opts = _config_options()
    engine_opts = _engine_options()
    parser = argparse.ArgumentParser(
        prog="ovpanoptic",
        description="Open-vocabulary panoptic segmentation: type class names, get every pixel labelled "
        "and every object its own id.",
    )
    parser.add_argument("--version", action="version", version=f"ovpanoptic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    seg = sub.add_parser(
        "segment",
        parents=[config_opts, engine_opts, plugin_opts],
        help="segment images with typed class names",
        description="Segment image files, folders or glob patterns. Example: ovpanoptic segment "
        "photos/ --classes \"person, forklift, pallet|skid\" --stuff \"floor, shelf\" -o out/",
    )
    seg.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (their images) or glob patterns")
    _add_vocabulary_options(seg.add_argument_group("vocabulary"))
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

    sv = sub.add_parser(
        "segment-video",
        parents=[config_opts, engine_opts, plugin_opts],
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
    _add_vocabulary_options(sv.add_argument_group("vocabulary"))
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

    evv = sub.add_parser(
        "eval-video",
        help="video panoptic quality (VPQ, STQ) and temporal consistency of a video result",
        description="Compare a segment-video result with video panoptic ground truth (COCO-panoptic JSON whose images "
        "carry video_id and frame_index): VPQ over k-frame windows (Kim et al. 2020) and STQ (Weber et al. 2021), "
        "per class and overall, plus the temporal consistency of the prediction. Without --gt-json only the "
        "consistency check runs.",
    )
    evv.add_argument("--gt-json", default=None, metavar="FILE", help="ground-truth video panoptic JSON")
    evv.add_argument("--gt-dir", default=None, metavar="DIR", help="folder of the ground-truth PNGs")
    evv.add_argument("--pred-json", required=True, metavar="FILE", help="predicted JSON (OUTDIR/panoptic.json of segment-video)")
    evv.add_argument("--pred-dir", required=True, metavar="DIR", help="folder of the predicted PNGs (OUTDIR/panoptic)")
    evv.add_argument("--spans", default=None, metavar="K,K,...", help="VPQ window lengths in frames (default: 1,5,10,15)")
    evv.add_argument("--consistency-threshold", type=float, default=0.5, metavar="X", help="report objects whose mask IoU between consecutive frames is below X (default: %(default)s)")
    evv.add_argument("--match-categories", choices=("id", "name"), default="id", help="pair categories by id (default) or by name")
    evv.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                     help="refuse a frame PNG whose header declares more pixels (width x height), before decoding it "
                     "(default: %(default)s; 0 = no limit)")
    evv.add_argument("--json", action="store_true", help="print the report as JSON")

    pl = sub.add_parser(
        "plugins",
        parents=[plugin_opts],
        help="list installed plugins and what they provide, or show one plugin or component",
        description="Without NAME: every plugin, its distribution, hooks and components, and any plugin that "
        "failed to register (exit code 2 then). With NAME (a plugin or a component name): each matching "
        "component's description and config fields with their types and defaults.",
    )
    pl.add_argument("name", nargs="?", help="a plugin or component name")
    pl.add_argument("--json", action="store_true", help="machine-readable output")

    dr = sub.add_parser(
        "doctor",
        parents=[plugin_opts],
        help="show the environment (versions, device, CPU, cached weights, plugins) and what is missing",
        description="Check the environment: Python and package versions, the device and CPU instruction set, "
        "offline mode, the weights in the cache and where, ovpanoptic's cache, and every plugin's health. "
        "Exit code 1 when something required is missing or broken; each such line says how to fix it.",
    )
    dr.add_argument("--json", action="store_true", help="machine-readable output")

    npl = sub.add_parser(
        "new-plugin",
        help="write a new plugin package (a proposal generator and an exporter, with tests) to start from",
        description="Write a plugin package into DIR: pyproject.toml with the entry point, a module with a "
        "proposal generator and an exporter, and tests using the ovpanoptic.testing kit. Then: "
        "pip install -e DIR && pytest DIR",
    )
    npl.add_argument("directory", metavar="DIR", help="folder to create (must not exist or be empty)")
    npl.add_argument("--name", default=None, help="plugin name (default: the folder's name)")

    vo = sub.add_parser("vocabularies", parents=[plugin_opts], help="list named vocabularies, or show one")
    vo.add_argument("name", nargs="?", help="show this vocabulary's classes")
    vo.add_argument("--json", action="store_true", help="machine-readable output")

    ed = sub.add_parser(
        "evaluate",
        parents=[config_opts, engine_opts, plugin_opts],
        help="zero-shot panoptic quality of a whole dataset (COCO, ADE20K, Cityscapes panoptic)",
        description="Segment every image of a panoptic dataset with a vocabulary built from the dataset's own "
        "categories, write the predictions in the dataset's format and report PQ / SQ / RQ (all, things, stuff, per "
        "class) with time per stage; OUT/evaluation.json holds the numbers and the protocol (vocabulary, prompt "
        "templates, image size, components, config). Resumable: the same command goes on where a stopped run "
        "ended. Example: ovpanoptic evaluate datasets/coco --format coco-panoptic -o eval-coco. See docs/scale.md",
    )
    ed.add_argument("dataset", metavar="DATASET_DIR", help="the dataset's folder (layouts: docs/scale.md)")
    from .evaluation.datasets import DATASET_FORMATS

    ed.add_argument("--format", dest="dataset_format", required=True, choices=tuple(DATASET_FORMATS), help="the dataset's format")
    ed.add_argument(
        "--vocabulary", default="auto", metavar="auto|NAME",
        help="auto: the dataset's categories, with synonyms from the named vocabulary of the format (default); "
        "NAME: a named vocabulary, matched to the dataset's classes by name",
    )
    paths = ed.add_argument_group("dataset files, when the layout is not the standard one")
    paths.add_argument("--annotations", metavar="FILE", default=None, help="the ground-truth panoptic JSON")
    paths.add_argument("--gt-dir", metavar="DIR", default=None, help="the ground-truth PNG folder")
    paths.add_argument("--image-dir", metavar="DIR", default=None, help="the images' folder")
    subset = ed.add_argument_group("subsets")
    subset.add_argument("--limit", type=int, default=None, metavar="N", help="the first N images (after --images)")
    subset.add_argument("--images", default=None, metavar="LIST", help="image names, comma-separated (000000139,000000285), or @FILE "
                        "with one per line (lines starting with # are comments)")
    eout = ed.add_argument_group("output")
    eout.add_argument("-o", "--output", metavar="OUT", required=True, help="output folder: predictions, manifest, evaluation.json")
    eout.add_argument("--overwrite", action="store_true", help="redo every image (by default a run resumes)")
    eout.add_argument("--json", action="store_true", help="print evaluation.json instead of the table")
    eout.add_argument("--review-below", type=float, default=50.0, metavar="PQ",
                      help="list the images whose own PQ (percent) is below this in evaluation.json (default: %(default)s)")
    ed.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = sub.add_parser(
        "eval",
        help="Panoptic Quality of predictions against ground truth (COCO panoptic API rules)",
        description="Compare predictions with ground truth: PQ, SQ, RQ for all, things, stuff and per category, with "
        "the rules of the COCO panoptic API, and each image's PQ (the images to review). Either side may be COCO "
        "panoptic, Cityscapes (panoptic or gtFine), a Label Studio JSON export or a CVAT for images 1.1 export: "
        "ovpanoptic eval --gt corrected.json --gt-use annotations --pred corrected.json --pred-use predictions "
        "measures how far the corrected labels moved from the pre-annotations.",
    )
    ev.add_argument("--gt", metavar="PATH", help="ground truth: a file or folder of any supported format")
    ev.add_argument("--pred", metavar="PATH", help="predictions: a file or folder of any supported format (e.g. OUTDIR)")
    formats = ("auto", *ANNOTATION_FORMATS)
    ev.add_argument("--gt-format", choices=formats, default="auto", help="format of --gt (default: detected)")
    ev.add_argument("--pred-format", choices=formats, default="auto", help="format of --pred (default: detected)")
    uses = ("auto", "annotations", "predictions")
    ev.add_argument("--gt-use", choices=uses, default="auto", help="Label Studio: read annotations or predictions "
                    "(default auto: annotations when a task has one)")
    ev.add_argument("--pred-use", choices=uses, default="auto", help="Label Studio: as --gt-use, for --pred")
    _add_vocabulary_options(ev.add_argument_group(
        "classes of Label Studio and CVAT sets (which name classes without ids or thing/stuff); default: the other "
        "side's category table"
    ))
    ev.add_argument("--review-below", type=float, default=80.0, metavar="PQ",
                    help="list images whose own PQ (percent) is below this for review (default: %(default)s)")
    ev.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                    help="refuse an annotated image whose file declares more pixels (width x height), before decoding "
                    "it (default: %(default)s; 0 = no limit)")
    legacy = ev.add_argument_group("COCO panoptic files given one by one (instead of --gt/--pred)")
    legacy.add_argument("--gt-json", metavar="FILE", help="ground-truth COCO-panoptic JSON")
    legacy.add_argument("--gt-dir", metavar="DIR", help="folder of the ground-truth PNGs")
    legacy.add_argument("--pred-json", metavar="FILE", help="predicted COCO-panoptic JSON (e.g. OUTDIR/panoptic.json)")
    legacy.add_argument("--pred-dir", metavar="DIR", help="folder of the predicted PNGs (e.g. OUTDIR/panoptic)")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument(
        "--match-categories",
        choices=("id", "name"),
        default="id",
        help="pair prediction and ground-truth categories by id (default; a prediction category table that "
        "names a shared id differently is refused) or by name (unmatched categories are listed)",
    )

    _add_qa_parser(sub)
    _add_package_parser(sub)

    pu = sub.add_parser("push", help="send an output folder to a labelling tool (a Label Studio project)")
    pushes = pu.add_subparsers(dest="target", metavar="TOOL", required=True)
    pls = pushes.add_parser(
        "label-studio",
        help="create or update a Label Studio project from a label-studio export: config, storage, tasks",
        description="Create a Label Studio project (or update --project ID) with OUTDIR/label-studio.xml as its "
        "labelling config, connect --images as its Local files storage (not synced), and import OUTDIR's tasks in "
        "chunks under Label Studio's 250 MB import limit, their image URLs pointing into that storage and their "
        "predictions under a model version of this push (label-studio-sdk).",
    )
    pls.add_argument("outdir", metavar="OUTDIR", help="output folder of 'ovpanoptic segment ... --format label-studio'")
    pls.add_argument("--label-studio-url", metavar="URL", default=None, help="Label Studio's address (default: $LABEL_STUDIO_URL)")
    pls.add_argument("--label-studio-token", metavar="TOKEN", default=None,
                     help="personal access token or legacy token (default: $LABEL_STUDIO_API_KEY)")
    pls.add_argument("--title", default=None, help="project title (default: the folder's name)")
    pls.add_argument("--project", type=int, default=None, metavar="ID", help="update this project instead of creating one")
    pls.add_argument("--images", metavar="DIR", default=None,
                     help="the images' folder, a subfolder of Label Studio's local-files root: connected as Local files storage")
    pls.add_argument("--local-files-root", metavar="DIR", default=None,
                     help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: that variable)")
    pls.add_argument("--chunk-mb", type=float, default=200.0, metavar="MB", help="largest import request (default: %(default)s)")
    pls.add_argument("--model-version", default=None, metavar="NAME",
                     help="the predictions' model version (default: ovpanoptic-VERSION-push-TIME, new at each push)")

    sr = sub.add_parser("serve", help="run a server that a labelling tool calls (Label Studio's ML backend)")
    servers = sr.add_subparsers(dest="server", metavar="SERVER", required=True)
    ls = servers.add_parser(
        "label-studio",
        parents=[config_opts, plugin_opts],
        help="Label Studio ML backend: pre-annotations for tasks and masks for the user's clicks",
        description="Answer Label Studio's ML backend protocol (health, setup, predict; interactive prediction from "
        "keypoints and rectangles with SAM 2). Connect it in the project: Settings -> Model -> Connect model, URL "
        "http://HOST:PORT. Example: ovpanoptic serve label-studio --classes \"person, forklift, pallet\" --stuff "
        "\"floor, shelf\" --label-studio-url http://127.0.0.1:8080 --label-studio-token TOKEN",
    )
    _add_vocabulary_options(ls.add_argument_group(
        "vocabulary (default: the classes of each project's BrushLabels tag)"
    ))
    net = ls.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    net.add_argument("--port", type=int, default=9090, help="TCP port (default: %(default)s)")
    net.add_argument("--basic-auth", metavar="USER:PASSWORD", default=None,
                     help="require HTTP Basic authentication (Label Studio's ML backend 'Basic auth' fields); default "
                     "from $OVPANOPTIC_BASIC_AUTH")
    net.add_argument("--no-auth", action="store_true", help="serve an address other than loopback without --basic-auth")
    net.add_argument("--max-request-mb", type=float, default=16.0, metavar="MB", help="largest request body (default: %(default)s)")
    net.add_argument("--predict-budget-s", type=float, default=80.0, metavar="S",
                     help="seconds one /predict request may segment; tasks not reached get no prediction and are asked "
                     "for again at the next 'Retrieve predictions' (default: %(default)s, under Label Studio's 100 s timeout)")
    net.add_argument("--model-version", default=None, metavar="NAME",
                     help="model version reported to Label Studio (default: ovpanoptic-VERSION-serve-START_TIME, new at "
                     "each start, so Label Studio asks again about tasks that hold older predictions)")
    images = ls.add_argument_group("where images come from (nothing else is fetched)")
    images.add_argument("--label-studio-url", metavar="URL", default=None,
                        help="Label Studio's address, e.g. http://127.0.0.1:8080 (default: $LABEL_STUDIO_URL); task images "
                        "are fetched from there only")
    images.add_argument("--label-studio-token", metavar="TOKEN", default=None,
                        help="Label Studio API token (personal access token or legacy token; default: $LABEL_STUDIO_API_KEY)")
    images.add_argument("--local-files-root", metavar="DIR", default=None,
                        help="read /data/local-files/?d=PATH images from this folder (Label Studio's "
                        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; default: that variable)")
    images.add_argument("--max-image-mb", type=float, default=64.0, metavar="MB", help="largest image fetched (default: %(default)s)")
    ls.add_argument("--print-config", action="store_true",
                    help="print the labelling config for the vocabulary (with the interactive point and box tools) and exit")

    dl = sub.add_parser(
        "download",
        parents=[config_opts, plugin_opts],
        help="fetch a component's model weights into the local cache ahead of time",
        description="Fetch the weights a component needs (e.g. 'ovpanoptic download sam2 --size tiny', "
        "'ovpanoptic download clip') so later runs work offline (HF_HUB_OFFLINE=1).",
    )
    dl.add_argument("component", metavar="COMPONENT", help="component name, e.g. sam2 or clip")
    dl.add_argument(
        "--model",
        "--size",
        dest="model",
        default=None,
        help="the model to fetch (sets the component's 'model' option): a size for sam2 "
        "(tiny, small, base_plus, large), an architecture for clip, or hf-hub:ORG/REPO/FILE",
    )

    de = sub.add_parser(
        "demo",
        parents=[_config_options(DEMO_PRESET), plugin_opts],
        help="start the Gradio demo (upload an image, type class names, see the result)",
        description="Serve the Gradio demo on this machine: upload an image, type class names, see the "
        "panoptic result, re-query with other names instantly. Stop it with Ctrl+C.",
    )
    de.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only; "
        "0.0.0.0 exposes the demo to your network)"
    )
    de.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    de.add_argument("--max-file-size", default="25mb", metavar="SIZE", help="upload limit, e.g. 25mb or 1gb (default: %(default)s)")
    de.add_argument(
        "--auth", action="append", default=[], metavar="USER:PASSWORD",
        help="require a login (Gradio's login page); repeat for several users. Needed to serve an address other "
        "than loopback (e.g. --host 0.0.0.0), unless --no-auth",
    )
    de.add_argument("--auth-file", metavar="FILE", help="USER:PASSWORD lines (blank lines and # comments skipped), like --auth")
    de.add_argument(
        "--no-auth", action="store_true",
        help="serve an address other than loopback without a login (anyone who reaches it can use the demo)",
    )

    pr = sub.add_parser(
        "presets",
        parents=[plugin_opts],
        help="list config presets, or show the resolved config of one",
        description="Without NAME: the presets and their files. With NAME: the config after --set overrides, "
        "every component table resolved with its component's defaults and checked against the installed plugins.",
    )
    pr.add_argument("name", nargs="?", help="show this preset (name or path) after --set overrides")
    pr.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[])
    return parser


def _add_qa_parser(sub: Any) -> None:
    """``ovpanoptic qa``: label QA against a ground truth, or agreement of two annotators."""
    qa = sub.add_parser(
        "qa",
        help="label QA report: per-class IoU against targets, confusion, mask AP, PQ, images to review (HTML, JSON, CSV)",
        description="Measure a labelled set against a ground truth (--gt/--pred), or two annotators' labels of the same "
        "images against each other (--agreement A B): PQ/SQ/RQ, per-class IoU and mIoU, mask AP at IoU 0.50/0.75/0.95 "
        "and AP[.50:.95] (pycocotools COCOeval), the class confusion in pixels and matched segments, each image's "
        "scores, the images to review first, and each class's pass/fail against its target (rigid 85 %%, deformable "
        "75 %%, thin 70 %%; from the vocabulary's kinds or --targets FILE). Writes OUT/report.html (self-contained), "
        "OUT/qa.json and CSV files. Reads every format 'ovpanoptic eval' reads. Example: ovpanoptic qa --agreement "
        "alice.json bob.json --vocabulary tabletop -o qa/",
    )
    qa.add_argument("--gt", metavar="PATH", help="ground truth: a file or folder of any format eval reads")
    qa.add_argument("--pred", metavar="PATH", help="the labels to check: a file or folder of any format eval reads")
    qa.add_argument("--agreement", nargs=2, metavar=("A", "B"), default=None,
                    help="two annotators' labels of the same images (instead of --gt/--pred): IoU counts both sides' void, so it is symmetric")
    formats = ("auto", *ANNOTATION_FORMATS)
    qa.add_argument("--gt-format", choices=formats, default="auto", help="format of --gt (or of A); default: detected")
    qa.add_argument("--pred-format", choices=formats, default="auto", help="format of --pred (or of B); default: detected")
    uses = ("auto", "annotations", "predictions")
    qa.add_argument("--gt-use", choices=uses, default="auto", help="Label Studio: read annotations or predictions of --gt (or A)")
    qa.add_argument("--pred-use", choices=uses, default="auto", help="Label Studio: as --gt-use, for --pred (or B)")
    _add_vocabulary_options(qa.add_argument_group(
        "classes: of Label Studio and CVAT sets, and the vocabulary whose categories' kinds set the targets"
    ))
    qa.add_argument("--targets", metavar="FILE", default=None,
                    help="TOML or JSON: default kind, [kinds] targets in percent, [classes] name = kind or percent (docs/qa.md)")
    qa.add_argument("--review-below", type=float, default=80.0, metavar="PQ",
                    help="review the images whose own PQ (percent) is below this (default: %(default)s)")
    qa.add_argument("--match-categories", choices=("id", "name"), default="id", help="pair the two sets' categories by id (default) or name")
    qa.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                    help="refuse an image whose file declares more pixels (default: %(default)s; 0 = no limit)")
    qa.add_argument("-o", "--output", metavar="OUT", default="qa-report", help="folder for report.html, qa.json and the CSV files (default: %(default)s)")
    qa.add_argument("--no-html", action="store_true", help="write JSON and CSV only")
    qa.add_argument("--json", action="store_true", help="print qa.json instead of the table")
    qa.add_argument("--fail-below-target", action="store_true", help="exit code 1 when a class is below its target (for CI)")


def _add_package_parser(sub: Any) -> None:
    """``ovpanoptic package``: a training-ready dataset folder from labels."""
    pk = sub.add_parser(
        "package",
        parents=[_config_options(), _plugin_options()],
        help="write a training-ready dataset: COCO panoptic + instances, semantic PNGs, YOLO-seg, Parquet, splits, dataset card",
        description="From an output folder or a corrected export (any format eval reads), write DATASET_DIR with "
        "train/val/test splits that keep every class in every split where possible: COCO panoptic + instances JSON, "
        "semantic class-index PNGs + id2label.json (SegFormer, Mask2Former-semantic), YOLO segmentation labels + "
        "data.yaml, Parquet files that datasets.load_dataset('parquet', ...) loads, and README.md, a Hugging Face "
        "dataset card filled from the manifest, the vocabulary and the QA report. Example: ovpanoptic package out/ "
        "--images photos/ --qa qa/qa.json -o dataset/",
    )
    pk.add_argument("source", metavar="SOURCE", help="labels: an ovpanoptic output folder or an export of any format eval reads")
    pk.add_argument("-o", "--output", metavar="DATASET_DIR", required=True, help="the dataset folder to write (must not exist or be empty)")
    pk.add_argument("--format", dest="source_format", choices=("auto", *ANNOTATION_FORMATS), default="auto", help="SOURCE's format (default: detected)")
    pk.add_argument("--use", choices=("auto", "annotations", "predictions"), default="auto", help="Label Studio: annotations or predictions")
    pk.add_argument("--images", metavar="DIR", default=None,
                    help="folder of the original images, found by name; it wins over the inputs the output folder's manifest "
                    "records (the default), and a CVAT export's own images/ folder. Every labelled image needs its original")
    pk.add_argument("--no-images", action="store_true",
                    help="package the labels only: no images/, no data.yaml (YOLO needs the images), Parquet 'image' column null")
    _add_vocabulary_options(pk.add_argument_group("classes of Label Studio and CVAT exports"))
    pk.add_argument("--splits", default="80,10,10", metavar="TRAIN,VAL,TEST", help="split percentages (default: %(default)s)")
    pk.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default: %(default)s; same seed, same splits)")
    pk.add_argument("--qa", metavar="QA_JSON", default=None, help="qa.json of 'ovpanoptic qa', for the dataset card's QA section")
    pk.add_argument("--name", default=None, help="the dataset's name in the card (default: the output folder's name)")
    pk.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N", help="refuse an image declaring more pixels (0 = no limit)")
    pk.add_argument("--overwrite", action="store_true", help="replace DATASET_DIR when it holds files")
    pk.add_argument("--refine", metavar="NAME", action="append", default=[],
                    help="clean each image's masks with this refiner before writing (repeatable, applied in order; "
                    "the built-in 'cleanup': 3x3 open/close, small islands dropped; options from --config/--set "
                    "refiner.NAME.KEY=VALUE)")
    pk.add_argument("--no-progress", action="store_true", help="no progress bar")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment, not the one of the first ``main()`` call (the
    CLI run again in one process, e.g. by tests, whose stderr is replaced between runs)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _setup_logging(verbose: int) -> None:
    """ovpanoptic's own loggers at WARNING (INFO with -v, DEBUG with -vv); other libraries' loggers
    stay at WARNING, so -v shows ovpanoptic's story, not every library's."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("ovpanoptic")
    logger.setLevel(level)
    if not any(getattr(h, "_ovpanoptic_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._ovpanoptic_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def _error(message: str, stream: TextIO) -> None:
    print(f"error: {message}", file=stream)


def _split_formats(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _prepare_vocabulary(pipe: Any, vocab: Any, quiet: bool, err: TextIO) -> None:
    """The classifier's per-vocabulary work (CLIP: encoding the class names) before any image, with a
    bar on a terminal: bad names are refused first, and what is encoded is cached as it goes."""
    from tqdm import tqdm

    text_bar: Any = None

    def text_progress(message: str, done: int, total: int) -> None:
        nonlocal text_bar
        if text_bar is None and total:
            text_bar = tqdm(total=total, desc=message, unit="name", disable=quiet, file=err)
        if text_bar is not None:
            text_bar.n = done
            text_bar.refresh()

    try:
        pipe.prepare_vocabulary(vocab, text_progress)
    finally:
        if text_bar is not None:
            text_bar.close()


def _cmd_segment(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .imageio import collect_inputs

    overrides = list(args.overrides)
    if args.max_side is not None:
        overrides.append(f"pipeline.max_side={args.max_side}")
    pipe, engine = _engine_pipeline(args, overrides)
    # Validate everything, and build every component (factories load no weights), before reading
    # or writing any image: a broken plugin is a start-up error (exit 2).
    vocab = pipe.vocabulary(args.classes, args.stuff, args.things, name=args.vocabulary)
    formats = _split_formats(args.formats) or list(pipe.config.pipeline.exporters)
    pipe.build_components(formats)
    if not args.output.strip():
        raise InputError("the output folder is empty (-o ''): name a folder, e.g. -o out")
    inputs = collect_inputs(args.inputs)
    outdir = Path(args.output)

    from tqdm import tqdm

    if engine.options is None:  # Ray workers prepare their own
        _prepare_vocabulary(pipe, vocab, args.no_progress or not err.isatty(), err)

    from .engines.batch import ImageOutcome

    quiet_bar = args.no_progress or not err.isatty()
    bar = tqdm(total=len(inputs), unit="img", disable=quiet_bar, file=err)
    say = _Say(out, err)

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
        report = _run_images(args, engine, pipe, vocab, inputs, outdir, formats, on_image)
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


def _cmd_segment_video(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from .engines.video import VideoSettings, VideoSummary, run_videos, video_folders
    from .video import FrameSelection, TrackingOptions

    overrides = list(args.overrides)
    if args.max_side is not None:
        overrides.append(f"pipeline.max_side={args.max_side}")
    if args.tracker is not None:
        overrides.append(f"pipeline.tracker={args.tracker!r}")
    pipe, engine = _engine_pipeline(args, overrides)
    options = engine.options
    vocab = pipe.vocabulary(args.classes, args.stuff, args.things, name=args.vocabulary)
    tracking = TrackingOptions(
        keyframe_every=args.keyframe_every, match_iou=args.match_iou, max_unseen=args.max_unseen, max_missed=args.max_missed,
        track_stuff=args.track_stuff, reid_similarity=args.reid_similarity,
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
    say = _Say(out, err)
    if options is None:
        _prepare_vocabulary(pipe, vocab, quiet, err)
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
            from .engines.ray_engine import run_videos_ray

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


def _say_video(summary: Any, say: _Say, bar: Any) -> None:
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


def _cmd_eval_video(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .evaluation.video import check_temporal_consistency, evaluate_video

    if (args.gt_json is None) != (args.gt_dir is None):
        raise InputError("give both --gt-json and --gt-dir (or neither, for the consistency check alone)")
    if not 0.0 <= args.consistency_threshold <= 1.0:
        raise InputError(f"--consistency-threshold must be in [0, 1], got {args.consistency_threshold}")
    if args.max_pixels < 0:
        raise InputError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
    if args.gt_json is None:
        report: Any = check_temporal_consistency(
            args.pred_json, args.pred_dir, threshold=args.consistency_threshold, max_pixels=args.max_pixels
        )
    else:
        kwargs: dict[str, Any] = {}
        if args.spans is not None:
            try:
                spans = tuple(int(s) for s in args.spans.split(",") if s.strip())
            except ValueError:
                raise InputError(f"--spans must be comma-separated integers like 1,5,10, got {args.spans!r}") from None
            if not spans or min(spans) < 1:
                raise InputError(f"--spans must be integers >= 1, got {args.spans!r}")
            kwargs["spans"] = spans
        report = evaluate_video(
            args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, consistency_threshold=args.consistency_threshold,
            match_categories=args.match_categories, max_pixels=args.max_pixels, **kwargs,
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), file=out)
    else:
        print(report.format_table(), file=out)
    return EXIT_OK


class _Say:
    """Prints that never stop a batch: when the output stream fails (a closed pipe, a full disk),
    later lines to it are dropped and the batch goes on (its exit code still tells the outcome)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._streams = {"out": out, "err": err}
        self._dead: set[str] = set()

    def _print(self, which: str, text: str, bar: Any = None) -> None:
        if which in self._dead:
            return
        try:
            if bar is not None and which == "err":
                bar.write(text, file=self._streams[which])
            else:
                print(text, file=self._streams[which], flush=True)
        except (OSError, ValueError):  # BrokenPipeError, ENOSPC, a closed file
            self._dead.add(which)

    def out(self, text: str) -> None:
        self._print("out", text)

    def err(self, text: str, bar: Any = None) -> None:
        self._print("err", text, bar)


def _format_default(value: Any) -> str:
    import dataclasses

    return "(required)" if value is dataclasses.MISSING else repr(value)


def _component_details(registry: Any, name: str) -> list[dict[str, Any]]:
    """Every component provided by plugin ``name``, or named ``name``, with its config fields."""
    from .components import KINDS
    from .config import describe_fields

    details = []
    for kind, specs in registry.components.items():
        for spec in specs.values():
            if name not in (spec.plugin, spec.name, f"{spec.plugin}:{spec.name}"):  # a shared name lists each plugin's
                continue
            details.append(
                {
                    "kind": KINDS[kind],
                    "name": spec.name,
                    "plugin": spec.plugin,
                    "distribution": registry.origin(spec.plugin).distribution,
                    "description": spec.description,
                    "config": spec.config_class.__name__,
                    "fields": [
                        {"name": f, "type": t, "default": _format_default(d)} for f, t, d in describe_fields(spec.config_class)
                    ],
                    "set": f"--set {kind}.{spec.name}.KEY=VALUE",
                }
            )
    return details


def _cmd_plugins(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .plugins import Registry

    try:
        registry = Registry.create(args.disable_plugin, strict=False)
    except OvpanopticError as exc:  # a plugin that cannot even be loaded
        if args.json:
            print(json.dumps({"error": str(exc)}, indent=2), file=out)
        raise
    infos = registry.plugins()
    if args.name:
        details = _component_details(registry, args.name)
        info = next((i for i in infos if i.name == args.name), None)
        if not details and info is None:
            names = sorted({i.name for i in infos} | {n for specs in registry.components.values() for n in specs})
            raise InputError(f"no plugin or component named {args.name!r}. Plugins and components: {', '.join(names)}")
        if args.json:
            print(json.dumps({"plugin": info.__dict__ if info else None, "components": details}, indent=2, default=str), file=out)
            return EXIT_USAGE if info is not None and info.problem else EXIT_OK
        if info is not None:
            origin = "built-in" if info.builtin else f"{info.distribution} {info.version}".strip()
            print(f"plugin {info.name} ({origin}){' [disabled]' if info.blocked else ''}", file=out)
            if info.problem:
                print(f"  error: {info.problem}", file=out)
                return EXIT_USAGE
        for d in details:
            print(f"{d['kind']} {d['name']}  (plugin {d['plugin']}, {d['distribution']})", file=out)
            if d["description"]:
                print(f"  {d['description']}", file=out)
            if d["fields"]:
                print(f"  options ({d['set']}):", file=out)
                for f in d["fields"]:
                    print(f"    {f['name']}: {f['type']} = {f['default']}", file=out)
            else:
                print("  options: none", file=out)
        return EXIT_OK
    if args.json:
        print(json.dumps([info.__dict__ for info in infos], indent=2), file=out)
        return EXIT_USAGE if registry.problems else EXIT_OK
    for info in infos:
        origin = "built-in" if info.builtin else f"{info.distribution} {info.version}".strip()
        state = " [disabled]" if info.blocked else " [error]" if info.problem else ""
        print(f"{info.name}{state}  ({origin})", file=out)
        if info.hooks:
            print(f"  hooks: {', '.join(info.hooks)}", file=out)
        for comp in info.components:
            print(f"  provides {comp}", file=out)
        if info.problem:
            print(f"  error: {info.problem}", file=out)
    if registry.problems:
        _error(f"{len(registry.problems)} plugin(s) failed to register: {', '.join(sorted(registry.problems))} (see above)", err)
        return EXIT_USAGE
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .doctor import run_checks

    checks = run_checks(args.disable_plugin)
    failed = [c for c in checks if not c.ok and c.required]
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2), file=out)
    else:
        width = max(len(c.topic) for c in checks)
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "note")
            print(f"{mark} {c.topic:<{width}}  {c.found}", file=out)
            if c.fix and not c.ok:
                print(f"     {'':<{width}}  {'fix' if c.required else 'hint'}: {c.fix}", file=out)
    if failed:
        _error(f"{len(failed)} required check(s) failed: {', '.join(c.topic for c in failed)}", err)
        return EXIT_SOME_FAILED
    return EXIT_OK


def _cmd_new_plugin(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .template import write_plugin_template

    written = write_plugin_template(Path(args.directory), args.name)
    for path in written:
        print(path, file=out)
    print(f"next: pip install -e {args.directory} && pytest {args.directory}", file=out)
    return EXIT_OK


def _cmd_vocabularies(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .plugins import Registry

    registry = Registry.create(args.disable_plugin)
    if args.name:
        vocab = registry.vocabulary(args.name)
        if args.json:
            print(json.dumps(vocab.to_dict(), indent=2), file=out)
            return EXIT_OK
        for c in vocab.categories:
            kind = "thing" if c.isthing else "stuff"
            syn = f"  ({', '.join(c.synonyms)})" if c.synonyms else ""
            print(f"{c.id:>4}  {kind}  {c.name}{syn}", file=out)
        return EXIT_OK
    specs = sorted(registry.vocabularies.values(), key=lambda s: s.name)
    if args.json:
        print(json.dumps([{"name": s.name, "description": s.description, "plugin": s.plugin} for s in specs], indent=2), file=out)
        return EXIT_OK
    for s in specs:
        print(f"{s.name:<20} {s.description}  [{s.plugin}]", file=out)
    return EXIT_OK


def _cmd_presets(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .config import list_presets, load_config

    if args.name:
        import dataclasses

        from .pipeline import Pipeline
        from .plugins import Registry

        config = load_config(args.name, args.overrides)
        registry = Registry.create(args.disable_plugin)
        config.selected(registry.components)
        config.check_tables(registry.components, registry.blocked_components())
        setting = config.pipeline.device_profile.strip()
        profile = None
        if setting not in ("auto", "none"):
            profile = Pipeline(config, registry=registry).device_profile  # validated against the components
        data = config.to_dict()
        if profile is not None and "tracker" not in config.stated and profile.pipeline.get("tracker"):
            data["pipeline"]["tracker"] = profile.pipeline["tracker"]  # the profile's, as a run would use it
        for kind in ("proposal_generator", "classifier", "fuser", "tracker"):
            name = data["pipeline"][kind]
            data.setdefault(kind, {})[name] = {}
        for name in config.pipeline.exporters:
            data.setdefault("exporter", {})[name] = {}
        for name in config.pipeline.refiners:
            data.setdefault("refiner", {})[name] = {}
        for kind, tables in list(data.items()):
            if kind == "pipeline":
                continue
            for name in tables:
                try:
                    spec = registry.components.get(kind, {}).get(name)
                except AmbiguousNameError:  # a table for a name several plugins register: shown as given
                    continue
                if spec is None:  # a table for a plugin that is not installed: shown as given
                    continue
                tables[name] = dataclasses.asdict(config.component_config(spec, profile.table(kind, name) if profile else None))
        print(json.dumps(data, indent=2, default=str), file=out)
        if setting == "auto":
            print(
                "device_profile = 'auto': options the config leaves unset come from the profile of the device found at run "
                "time (configs/devices/; 'ovpanoptic doctor' names it, -v prints its values); shown above without it",
                file=err,
            )
        return EXIT_OK
    for name, path in sorted(list_presets().items()):
        print(f"{name:<20} {path}", file=out)
    return EXIT_OK


def _eval_categories(args: argparse.Namespace) -> Any:
    """The ``CategoryInfo`` list of ``--classes``/``--vocabulary``, or ``None`` when neither is given."""
    if not (args.classes.strip() or args.stuff.strip() or args.things.strip() or args.vocabulary):
        return None
    from .evaluation import CategoryInfo
    from .plugins import Registry

    registry = Registry.create()
    if args.vocabulary:
        if args.classes.strip() or args.stuff.strip() or args.things.strip():
            raise InputError("give either --vocabulary or --classes/--stuff/--things, not both")
        vocab = registry.vocabulary(args.vocabulary)
    else:
        vocab = registry.parse_vocabulary(args.classes, args.stuff, args.things)
    return [CategoryInfo(c.id, c.name, c.isthing) for c in vocab.categories]


def _read_eval_sets(args: argparse.Namespace) -> tuple[Any, Any]:
    """Read ``--gt`` and ``--pred``; a name-only side (Label Studio, CVAT) takes the classes from
    ``--classes``/``--vocabulary``, else from its own category table, else from the other side."""
    from .evaluation.readers import NAME_ONLY_FORMATS, detect_format, read_annotations

    given = _eval_categories(args)
    sides = {"gt": (args.gt, args.gt_format, args.gt_use, "ground-truth"), "pred": (args.pred, args.pred_format, args.pred_use, "prediction")}
    kinds = {side: detect_format(path) if fmt == "auto" else fmt for side, (path, fmt, _, _) in sides.items()}
    for side, (path, _, use, _) in sides.items():
        if use != "auto" and kinds[side] != "label-studio":
            raise InputError(f"--{side}-use applies to Label Studio exports; {path} is {kinds[side]}: leave --{side}-use out")
    read: dict[str, Any] = {}
    for side in sorted(sides, key=lambda s: kinds[s] in NAME_ONLY_FORMATS):  # sets with a table first
        path, _, use, role = sides[side]
        other = read.get("pred" if side == "gt" else "gt")
        fallback = other.categories if other is not None and other.format not in NAME_ONLY_FORMATS else None
        read[side] = read_annotations(
            path, kinds[side], categories=given, fallback=fallback, role=role, use=use, max_pixels=args.max_pixels
        )
    return read["gt"], read["pred"]


def _cmd_eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from .evaluation import evaluate_annotations, evaluate_panoptic

    legacy = [args.gt_json, args.gt_dir, args.pred_json, args.pred_dir]
    if any(legacy) and (args.gt or args.pred):
        raise InputError("give either --gt/--pred or --gt-json/--gt-dir/--pred-json/--pred-dir, not both")
    if any(legacy) and not all(legacy):
        raise InputError("--gt-json, --gt-dir, --pred-json and --pred-dir go together: give all four (or use --gt and --pred)")
    if not any(legacy) and not (args.gt and args.pred):
        raise InputError("give the ground truth and the predictions: --gt PATH --pred PATH (any supported format)")
    if not 0.0 <= args.review_below <= 100.0:
        raise InputError(f"--review-below is a PQ in percent (0 to 100), got {args.review_below}")
    if args.max_pixels < 0:
        raise InputError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
    with tqdm(unit="img", disable=not err.isatty(), file=err) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        if any(legacy):
            report: Any = evaluate_panoptic(
                args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, progress=progress, match_categories=args.match_categories,
                max_pixels=args.max_pixels,
            )
        else:
            gt, pred = _read_eval_sets(args)
            report = evaluate_annotations(
                gt, pred, match_categories=args.match_categories, review_below=args.review_below / 100.0, progress=progress
            )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), file=out)
    else:
        print(report.format_table(), file=out)
    return EXIT_OK


def _qa_vocabulary(args: argparse.Namespace) -> Any:
    """The vocabulary of ``--classes``/``--vocabulary`` (for the targets' kinds), or ``None``."""
    if not (args.classes.strip() or args.stuff.strip() or args.things.strip() or args.vocabulary):
        return None
    from .plugins import Registry

    registry = Registry.create()
    if args.vocabulary:
        return registry.vocabulary(args.vocabulary)
    return registry.parse_vocabulary(args.classes, args.stuff, args.things)


def _cmd_qa(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from .atomic import CLI_OUTPUT_FIX, check_output_folder
    from .evaluation.qa import REPORT_FILES, run_qa
    from .evaluation.report import write_html_report
    from .evaluation.targets import Targets, load_targets

    if args.agreement and (args.gt or args.pred):
        raise InputError("give either --gt/--pred (a ground truth and labels to check) or --agreement A B (two annotators), not both")
    if not args.agreement and not (args.gt and args.pred):
        raise InputError("give the ground truth and the labels to check (--gt PATH --pred PATH), or two annotators' labels (--agreement A B)")
    if not 0.0 <= args.review_below <= 100.0:
        raise InputError(f"--review-below is a PQ in percent (0 to 100), got {args.review_below}")
    if args.max_pixels < 0:
        raise InputError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
    outdir = check_output_folder(args.output, CLI_OUTPUT_FIX)  # before anything is read
    targets = load_targets(args.targets) if args.targets else Targets()
    vocab = _qa_vocabulary(args)
    if vocab is not None:
        targets = targets.with_vocabulary({c.name: getattr(c, "kind", None) for c in vocab.categories})
    sides = argparse.Namespace(**vars(args))
    if args.agreement:
        sides.gt, sides.pred = args.agreement
    first, second = _read_eval_sets(sides)
    for side, role in ((first, "the first set (A)" if args.agreement else "the ground truth (--gt)"),
                       (second, "the second set (B)" if args.agreement else "the labels to check (--pred)")):
        if not side.names:
            raise InputError(f"{role} {side.source} holds no image: give a file or folder with labelled images")
    targets.check_classes(
        [c.name for c in first.categories.values()] + [c.name for c in second.categories.values()], f"{first.source} or {second.source}"
    )
    with tqdm(unit="img", disable=not err.isatty(), file=err) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        report = run_qa(
            first, second, agreement=bool(args.agreement), targets=targets, match_categories=args.match_categories,
            review_below=args.review_below / 100.0, progress=progress,
        )
    earlier = [n for n in REPORT_FILES if (outdir / n).is_file() and not (n == "report.html" and args.no_html)]
    report.write(outdir)
    if not args.no_html:
        write_html_report(report, outdir / "report.html", first, second, match_categories=args.match_categories)
    if earlier:
        print(f"replaced the earlier report's {', '.join(earlier)} in {outdir} (other files there are left alone)", file=err)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), file=out)
    else:
        print(report.format_table(), file=out)
        print(f"report: {outdir / 'report.html' if not args.no_html else outdir / 'qa.json'}", file=out)
    return EXIT_SOME_FAILED if args.fail_below_target and report.failing else EXIT_OK


def _cmd_package(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from .packaging import PackageOptions, package_dataset

    categories = _eval_categories(args)
    with tqdm(unit="img", disable=args.no_progress or not err.isatty(), file=err) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        options = PackageOptions.from_text(
            splits=args.splits, seed=args.seed, name=args.name, overwrite=args.overwrite, max_pixels=args.max_pixels,
            labels_only=args.no_images,
        )
        refine = None
        if args.refine:
            from .pipeline import Pipeline

            twice = sorted({n for n in args.refine if args.refine.count(n) > 1})
            if twice:
                raise InputError(f"--refine {twice[0]} is given twice: name each refiner once (they run in the order given)")
            pipe = Pipeline(args.config, overrides=args.overrides, disable_plugins=args.disable_plugin)
            for name in args.refine:  # an unknown or broken refiner is refused before anything is read
                pipe.registry.component("refiner", name, option="--refine NAME")
                pipe.component("refiner", name)

            def refine(result: Any) -> Any:
                return pipe.refine(result, None, names=args.refine)

        summary = package_dataset(
            args.source, args.output, fmt=args.source_format, use=args.use, categories=categories, images=args.images,
            qa=args.qa, options=options, progress=progress, refine=refine,
        )
    print(summary.format_text(), file=out)
    return EXIT_OK


def _image_list(value: str | None) -> list[str] | None:
    """``--images``: comma-separated names, or ``@FILE`` with one name per line (``#`` comments)."""
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--images {value}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [part.strip() for part in value.split(",") if part.strip()]


def _cmd_evaluate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from .engines.dataset import dataset_vocabulary, evaluate_dataset
    from .evaluation.datasets import DATASET_FORMATS, check_output_folder, find_dataset, select_images

    if not 0.0 <= args.review_below <= 100.0:
        raise InputError(f"--review-below is a PQ in percent (0 to 100), got {args.review_below}")
    pipe, engine = _engine_pipeline(args, args.overrides)
    names = _image_list(args.images)
    dataset = find_dataset(args.dataset, args.dataset_format, annotations=args.annotations, gt_dir=args.gt_dir, image_dir=args.image_dir)
    images = select_images(dataset, names=names, limit=args.limit)
    if not args.output.strip():
        raise InputError("the output folder is empty (-o ''): name a folder, e.g. -o eval-coco")
    check_output_folder(dataset, Path(args.output))
    vocab, id_map, notes = dataset_vocabulary(dataset, pipe.registry, args.vocabulary)
    formats = [DATASET_FORMATS[dataset.format]]
    pipe.build_components(formats)
    quiet = args.no_progress or not err.isatty()
    if engine.options is None:
        _prepare_vocabulary(pipe, vocab, quiet, err)
    say = _Say(out, err)
    bar = tqdm(total=len(images), unit="img", disable=quiet, file=err)

    def on_image(outcome: Any) -> None:
        if outcome.status == "failed":
            say.err(f"error: {outcome.error}", bar)
        bar.update(1)

    def run(inputs: Sequence[Path], outdir: Path, fmts: Sequence[str]) -> Any:
        return _run_images(args, engine, pipe, vocab, inputs, outdir, fmts, on_image)

    if not args.json:
        print(f"{dataset.format}: {len(images)} of {len(dataset.images)} image(s), {len(vocab)} classes ({args.vocabulary})", file=out)
    try:
        result = evaluate_dataset(
            pipe, dataset, images, vocab, id_map, Path(args.output), run, vocabulary_source=args.vocabulary, notes=notes,
            selection={"limit": args.limit, "images": names}, engine=args.engine, review_below=args.review_below / 100.0,
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result.data, indent=1, default=str), file=out)
    else:
        print(result.report.report.format_table(), file=out)
        stages = result.data["timing"]["stages"]
        if stages:
            print("seconds per image (mean / median): " + ", ".join(
                f"{k} {v['mean_s']:.3g}/{v['median_s']:.3g}" for k, v in stages.items()), file=out)
        print(f"evaluation and protocol: {result.path}", file=out)
    if result.batch.stopped is not None:
        say.err(f"error: the run stopped at {result.batch.stopped.path}: {result.batch.stopped.error}. The numbers cover the "
                f"{result.data['images']['evaluated']} image(s) done; fix this and run the same command again to go on")
        return EXIT_SOME_FAILED
    if result.failed:
        say.err(f"{len(result.failed)} image(s) failed and are not in the numbers (see {result.path.name}); run the same "
                "command again to retry them")
        return EXIT_SOME_FAILED
    return EXIT_OK


def _cmd_download(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .components import KINDS, Downloadable
    from .pipeline import Pipeline

    pipe = Pipeline(args.config, overrides=args.overrides, device=args.device or "cpu", disable_plugins=args.disable_plugin)
    kinds = [k for k in KINDS if args.component in pipe.registry.components.get(k, {})]
    if not kinds:
        names = sorted({n for specs in pipe.registry.components.values() for n in specs})
        raise InputError(f"no component named {args.component!r}; components: {', '.join(names)}")
    if args.model is not None:
        pipe = Pipeline(
            pipe.config.with_overrides([f"{k}.{args.component}.model={args.model!r}" for k in kinds]),
            registry=pipe.registry,
            device=args.device or "cpu",
        )
    fetched = 0
    for kind in kinds:
        component = pipe.component(kind, args.component)
        if isinstance(component, Downloadable):
            from . import boundary

            target = pipe.registry.target(pipe.registry.component(kind, args.component))
            try:
                files = boundary.call(target, "download()", component.download, user_errors=(*boundary.USER_ERRORS, OSError))
            except OSError as exc:  # the network or the disk, not the plugin
                raise InputError(
                    f"{args.component}: the download failed ({type(exc).__name__}: {exc}); check the network connection "
                    "(and HF_HUB_OFFLINE), or fetch the file elsewhere and pass its path with --model PATH"
                ) from None
            for path in boundary.check_download(target, files):
                print(f"{args.component}: {path}", file=out)
            fetched += 1
    if not fetched:
        raise InputError(f"{args.component!r} has no weights to download")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .demo import (
        build_demo,
        check_exposure,
        check_file_size,
        launch_demo,
        parse_auth,
        read_auth_file,
        stop_on_sigterm,
    )

    auth = [parse_auth(text) for text in args.auth]
    if args.auth_file:
        auth += read_auth_file(args.auth_file)
    if auth and args.no_auth:
        raise InputError("--no-auth and --auth/--auth-file contradict each other: keep one")
    check_exposure(args.host, auth, args.no_auth)
    if not 1 <= args.port <= 65535:
        raise InputError(f"the port must be a number from 1 to 65535, got {args.port} (--port)")
    check_file_size(args.max_file_size)
    with stop_on_sigterm() as stop:  # from here on, SIGTERM or SIGHUP stop the demo and remove its folder
        demo = build_demo(
            config=args.config, overrides=args.overrides, device=args.device, disable_plugins=args.disable_plugin,
            private_uploads=True,
        )
        try:
            if stop.is_set():  # asked to stop while the page was being built
                return EXIT_OK
            login = f", login required for {len(auth)} user{'s' if len(auth) != 1 else ''}" if auth else ""

            def ready() -> None:
                print(f"ovpanoptic demo: http://{args.host}:{args.port}{login} (Ctrl+C stops it)", file=out, flush=True)

            launch_demo(
                demo, host=args.host, port=args.port, max_file_size=args.max_file_size, auth=auth,
                no_auth=args.no_auth, ready=ready, stop=stop,
            )
        finally:
            demo.ovpanoptic_app.close()
    return EXIT_OK


def _cmd_push(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import os

    from .label_studio_push import push_label_studio

    url = args.label_studio_url or os.environ.get("LABEL_STUDIO_URL")
    token = args.label_studio_token or os.environ.get("LABEL_STUDIO_API_KEY")
    if not url or not token:
        raise InputError("push needs Label Studio's address and a token: give --label-studio-url and --label-studio-token "
                         "(or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)")
    root = args.local_files_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    result = push_label_studio(
        Path(args.outdir), url=url, token=token, title=args.title, project_id=args.project,
        images=Path(args.images) if args.images else None, local_files_root=Path(root) if root else None,
        chunk_mb=args.chunk_mb, model_version=args.model_version,
    )
    print(f"project {result.project_id}: {result.tasks} tasks imported in {result.chunks} request(s), model version "
          f"{result.model_version}" + (f", local files storage {result.storage_id}" if result.storage_id else "")
          + f"\n{result.url}", file=out)
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import os

    from .pipeline import Pipeline
    from .serve import FetchPolicy, LabelStudioBackend, ServeOptions, check_exposure, make_server

    pipe = Pipeline(args.config, overrides=args.overrides, device=args.device, disable_plugins=args.disable_plugin)
    given = args.classes.strip() or args.stuff.strip() or args.things.strip() or args.vocabulary
    vocab = pipe.vocabulary(args.classes, args.stuff, args.things, name=args.vocabulary) if given else None
    exporter = pipe.component("exporter", "label-studio")
    if args.print_config:
        if vocab is None:
            raise InputError("--print-config needs the classes: give --classes or --vocabulary")
        print(exporter.labelling_config(vocab, interactive=True), file=out, end="")
        return EXIT_OK
    auth_text = args.basic_auth or os.environ.get("OVPANOPTIC_BASIC_AUTH")
    auth = None
    if auth_text:
        user, sep, password = auth_text.partition(":")
        if not sep:
            raise InputError("--basic-auth must be USER:PASSWORD")
        auth = (user, password)
    for flag, value in (("--max-request-mb", args.max_request_mb), ("--max-image-mb", args.max_image_mb)):
        if not value > 0:
            raise InputError(f"{flag} must be a positive number of megabytes, got {value}")
    if not args.predict_budget_s > 0:
        raise InputError(f"--predict-budget-s must be a positive number of seconds, got {args.predict_budget_s}")
    root = args.local_files_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    try:
        options = ServeOptions(args.host, args.port, auth, int(args.max_request_mb * 1024 * 1024), no_auth=args.no_auth)
        policy = FetchPolicy(
            label_studio_url=args.label_studio_url or os.environ.get("LABEL_STUDIO_URL"),
            token=args.label_studio_token or os.environ.get("LABEL_STUDIO_API_KEY"),
            local_files_root=Path(root) if root else None,
            max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    check_exposure(options)
    if vocab is not None:
        _prepare_vocabulary(pipe, vocab, True, err)
    backend = LabelStudioBackend(pipe, vocab, policy, model_version=args.model_version, predict_budget_s=args.predict_budget_s)
    try:
        server = make_server(
            backend, options, on_bind=lambda host, port: print(f"Label Studio ML backend on http://{host}:{port} (Ctrl-C stops)", file=err, flush=True)
        )
    except OSError as exc:
        backend.close()
        raise InputError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): choose another --port or --host") from None
    import threading

    from .stopping import stop_on_sigterm

    # Served from a thread, so that Ctrl+C, SIGTERM and SIGHUP all end in the same clean shutdown
    # (the fetched images are removed).
    serving = threading.Thread(target=server.serve_forever, name="label-studio-backend", daemon=True)
    with stop_on_sigterm() as stop:
        serving.start()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
            backend.close()
    return EXIT_OK


_COMMANDS: dict[str, Any] = {
    "demo": _cmd_demo,
    "doctor": _cmd_doctor,
    "download": _cmd_download,
    "eval": _cmd_eval,
    "evaluate": _cmd_evaluate,
    "eval-video": _cmd_eval_video,
    "qa": _cmd_qa,
    "package": _cmd_package,
    "segment-video": _cmd_segment_video,
    "new-plugin": _cmd_new_plugin,
    "segment": _cmd_segment,
    "push": _cmd_push,
    "serve": _cmd_serve,
    "plugins": _cmd_plugins,
    "vocabularies": _cmd_vocabularies,
    "presets": _cmd_presets,
}


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    for stream in (out, err):  # file names that are not UTF-8 still print (as \x.. escapes)
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure) and getattr(stream, "errors", "strict") == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(out)
        return EXIT_USAGE
    _setup_logging(getattr(args, "verbose", 0))
    try:
        return int(_COMMANDS[args.command](args, out, err))
    except OvpanopticError as exc:
        log.debug("details of the error below", exc_info=exc)  # -vv: e.g. a plugin's own traceback
        _error(str(exc), err)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into a pager or head that exited
        return EXIT_OK
    except KeyboardInterrupt:
        _error("interrupted", err)
        return 130
