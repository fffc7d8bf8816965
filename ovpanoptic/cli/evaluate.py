"""``ovpanoptic eval`` (two labelled sets), ``ovpanoptic eval-video`` and ``ovpanoptic evaluate`` (a whole
dataset, segmented and scored): each command's options beside the function that runs it.

:func:`read_eval_sets` and :func:`eval_categories` read ``--gt``/``--pred`` and the class options the way
``eval`` does; ``qa`` and ``package`` read theirs through them too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..constants import ANNOTATION_FORMATS, DEFAULT_MAX_PIXELS
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
    plugin_options,
    prepare_vocabulary,
    run_images,
)

__all__ = [
    "add_eval",
    "add_eval_video",
    "add_evaluate",
    "cmd_eval",
    "cmd_eval_video",
    "cmd_evaluate",
    "eval_categories",
    "read_eval_sets",
]


def add_eval_video(sub: Subcommands) -> None:
    """``ovpanoptic eval-video``: its options; it runs :func:`cmd_eval_video`."""
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
    evv.set_defaults(handler=cmd_eval_video)


def cmd_eval_video(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print VPQ/STQ and the temporal consistency of a ``segment-video`` result (without ``--gt-json``: the consistency
    alone)."""
    from ..evaluation.video import check_temporal_consistency, evaluate_video

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


def add_evaluate(sub: Subcommands) -> None:
    """``ovpanoptic evaluate``: its options; it runs :func:`cmd_evaluate`."""
    ed = sub.add_parser(
        "evaluate",
        parents=[config_options(), engine_options(), plugin_options()],
        help="zero-shot panoptic quality of a whole dataset (COCO, ADE20K, Cityscapes panoptic)",
        description="Segment every image of a panoptic dataset with a vocabulary built from the dataset's own "
        "categories, write the predictions in the dataset's format and report PQ / SQ / RQ (all, things, stuff, per "
        "class) with time per stage; OUT/evaluation.json holds the numbers and the protocol (vocabulary, prompt "
        "templates, image size, components, config). Resumable: the same command goes on where a stopped run "
        "ended. Example: ovpanoptic evaluate datasets/coco --format coco-panoptic -o eval-coco. See docs/scale.md",
    )
    ed.add_argument("dataset", metavar="DATASET_DIR", help="the dataset's folder (layouts: docs/scale.md)")
    from ..evaluation.datasets import DATASET_FORMATS

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
    ed.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                    help="refuse a ground-truth PNG whose header declares more pixels (width x height), before decoding "
                    "it (default: %(default)s; 0 = no limit)")
    ed.add_argument("--no-progress", action="store_true", help="no progress bar")
    ed.set_defaults(handler=cmd_evaluate)


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


def cmd_evaluate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Segment a dataset's images and print its PQ; 1 when images failed or the run stopped."""
    from tqdm import tqdm

    from ..engines.dataset import dataset_vocabulary, evaluate_dataset
    from ..evaluation.datasets import DATASET_FORMATS, check_output_folder, find_dataset, select_images

    if not 0.0 <= args.review_below <= 100.0:
        raise InputError(f"--review-below is a PQ in percent (0 to 100), got {args.review_below}")
    if args.max_pixels < 0:
        raise InputError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
    pipe, engine = engine_pipeline(args, args.overrides)
    names = _image_list(args.images)
    dataset = find_dataset(args.dataset, args.dataset_format, annotations=args.annotations, gt_dir=args.gt_dir, image_dir=args.image_dir)
    images = select_images(dataset, names=names, limit=args.limit, max_pixels=args.max_pixels)
    if not args.output.strip():
        raise InputError("the output folder is empty (-o ''): name a folder, e.g. -o eval-coco")
    check_output_folder(dataset, Path(args.output))
    vocab, id_map, notes = dataset_vocabulary(dataset, pipe.registry, args.vocabulary)
    formats = [DATASET_FORMATS[dataset.format]]
    pipe.build_components(formats)
    quiet = args.no_progress or not err.isatty()
    if engine.options is None:
        prepare_vocabulary(pipe, vocab, quiet, err)
    say = Say(out, err)
    bar = tqdm(total=len(images), unit="img", disable=quiet, file=err)

    def on_image(outcome: Any) -> None:
        if outcome.status == "failed":
            say.err(f"error: {outcome.error}", bar)
        bar.update(1)

    def run(inputs: Sequence[Path], outdir: Path, fmts: Sequence[str]) -> Any:
        return run_images(args, engine, pipe, vocab, inputs, outdir, fmts, on_image)

    if not args.json:
        print(f"{dataset.format}: {len(images)} of {len(dataset.images)} image(s), {len(vocab)} classes ({args.vocabulary})", file=out)
    try:
        result = evaluate_dataset(
            pipe, dataset, images, vocab, id_map, Path(args.output), run, vocabulary_source=args.vocabulary, notes=notes,
            selection={"limit": args.limit, "images": names}, engine=args.engine, review_below=args.review_below / 100.0,
            max_pixels=args.max_pixels,
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


def add_eval(sub: Subcommands) -> None:
    """``ovpanoptic eval``: its options; it runs :func:`cmd_eval`."""
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
    add_vocabulary_options(ev.add_argument_group(
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
    ev.set_defaults(handler=cmd_eval)


def eval_categories(args: argparse.Namespace) -> Any:
    """The ``CategoryInfo`` list of ``--classes``/``--vocabulary``, or ``None`` when neither is given."""
    if not (args.classes.strip() or args.stuff.strip() or args.things.strip() or args.vocabulary):
        return None
    from ..formats import CategoryInfo
    from ..plugins import Registry

    registry = Registry.create()
    if args.vocabulary:
        if args.classes.strip() or args.stuff.strip() or args.things.strip():
            raise InputError("give either --vocabulary or --classes/--stuff/--things, not both")
        vocab = registry.vocabulary(args.vocabulary)
    else:
        vocab = registry.parse_vocabulary(args.classes, args.stuff, args.things)
    return [CategoryInfo(c.id, c.name, c.isthing) for c in vocab.categories]


def read_eval_sets(args: argparse.Namespace) -> tuple[Any, Any]:
    """Read ``--gt`` and ``--pred``; a name-only side (Label Studio, CVAT) takes the classes from
    ``--classes``/``--vocabulary``, else from its own category table, else from the other side."""
    from ..formats import NAME_ONLY_FORMATS, detect_format, read_annotations

    given = eval_categories(args)
    sides = {"gt": (args.gt, args.gt_format, args.gt_use, "ground-truth"), "pred": (args.pred, args.pred_format, args.pred_use, "prediction")}
    kinds = {side: detect_format(path, role) if fmt == "auto" else fmt for side, (path, fmt, _, role) in sides.items()}
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


def cmd_eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the Panoptic Quality of ``--pred`` against ``--gt`` (or of the four COCO panoptic files)."""
    from tqdm import tqdm

    from ..evaluation import evaluate_annotations, evaluate_panoptic

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
            gt, pred = read_eval_sets(args)
            # Which file and format each side was read as (a folder may hold several exports: docs/labelling.md).
            for role, read in (("ground truth", gt), ("prediction", pred)):
                bar.write(f"{role}: {read.source} ({read.format})", file=err)
            report = evaluate_annotations(
                gt, pred, match_categories=args.match_categories, review_below=args.review_below / 100.0, progress=progress
            )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), file=out)
    else:
        print(report.format_table(), file=out)
    return EXIT_OK
