"""``ovpanoptic qa`` (label QA against a ground truth, or two annotators' agreement) and ``ovpanoptic
package`` (a training-ready dataset from labels): each command's options beside the function that runs it.
Both read labels the way ``eval`` does (:mod:`.evaluate`)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ..constants import ANNOTATION_FORMATS, DEFAULT_MAX_PIXELS
from ..errors import InputError
from .common import EXIT_OK, EXIT_SOME_FAILED, Subcommands, add_vocabulary_options, config_options, plugin_options
from .evaluate import eval_categories, read_eval_sets

__all__ = ["add_package", "add_qa", "cmd_package", "cmd_qa"]


def add_qa(sub: Subcommands) -> None:
    """``ovpanoptic qa``: label QA against a ground truth, or agreement of two annotators; it runs :func:`cmd_qa`."""
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
    add_vocabulary_options(qa.add_argument_group(
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
    qa.set_defaults(handler=cmd_qa)


def _qa_vocabulary(args: argparse.Namespace) -> Any:
    """The vocabulary of ``--classes``/``--vocabulary`` (for the targets' kinds), or ``None``."""
    if not (args.classes.strip() or args.stuff.strip() or args.things.strip() or args.vocabulary):
        return None
    from ..plugins import Registry

    registry = Registry.create()
    if args.vocabulary:
        return registry.vocabulary(args.vocabulary)
    return registry.parse_vocabulary(args.classes, args.stuff, args.things)


def cmd_qa(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write the QA report of ``--pred`` against ``--gt`` (or of ``--agreement A B``) and print its table; 1 with
    ``--fail-below-target`` when a class misses its target."""
    from tqdm import tqdm

    from ..atomic import CLI_OUTPUT_FIX, check_output_folder
    from ..evaluation.qa import REPORT_FILES, run_qa
    from ..evaluation.report import write_html_report
    from ..evaluation.targets import Targets, load_targets

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
    first, second = read_eval_sets(sides)
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


def add_package(sub: Subcommands) -> None:
    """``ovpanoptic package``: a training-ready dataset folder from labels; it runs :func:`cmd_package`."""
    pk = sub.add_parser(
        "package",
        parents=[config_options(), plugin_options()],
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
    add_vocabulary_options(pk.add_argument_group("classes of Label Studio and CVAT exports"))
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
    pk.set_defaults(handler=cmd_package)


def cmd_package(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write a training-ready dataset folder from labels and print its summary."""
    from tqdm import tqdm

    from ..packaging import PackageOptions, package_dataset

    categories = eval_categories(args)
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
            from ..pipeline import Pipeline

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
