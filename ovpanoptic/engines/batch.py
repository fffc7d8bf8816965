"""The batch core every engine shares: checks, the manifest, skipping, recording, finishing.

:func:`run_batch` does everything about a batch but segmenting its images: before anything is
written it checks the output folder (a folder or creatable, writable, not in use by another run,
holding no results made with another config, vocabulary or formats, neither in its manifest nor, for
exporters that keep combined files such as ``panoptic.json``, in those files, and containing none
of the inputs), then starts the engine (:class:`Executor`), opens the manifest, hands the engine the
images that need work (:class:`ImageJob`, lazily, in input order) and records each result as it
comes back, in whatever order the engine finishes them. At the end the exporters assemble their
combined files from every finished image, in input order, so the files do not depend on the engine
or on the order in which images finished. The manifest is the one file whose line order follows
completion order.

A run of the same command after a crash or ``kill -9`` skips the images already done (same content,
every recorded file still there), removes the temporary files of atomic writes the killed run left,
and redoes the rest, ending with the same files as an uninterrupted run. An image's outputs are all
or nothing: when an image fails, the files its export wrote are removed, and when an image done by
an earlier run is redone (its content changed) and fails, its earlier outputs are removed too.

:func:`process_image` is the per-image work (read, segment, export the image's own files), the same
function in the local engine's process and in every Ray worker.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import boundary
from ..atomic import CLI_OUTPUT_FIX, check_output_folder
from ..components import OutputChecker
from ..errors import ComponentError, ImageReadError, InputError, OvpanopticError
from ..imageio import read_image
from ..types import PanopticResult, Vocabulary
from .manifest import MANIFEST_NAME, BatchHeader, Manifest, Record, assign_stems, check_header, check_no_video_run, file_digest

__all__ = [
    "BatchReport",
    "BatchStop",
    "Executor",
    "ImageJob",
    "ImageOutcome",
    "check_folder",
    "component_origins",
    "export_image",
    "guarded",
    "encode_together",
    "process_image",
    "process_images",
    "remove_stale_temporaries",
    "resolved_settings",
    "run_batch",
    "segment_image",
]

log = logging.getLogger(__name__)

#: Temporary files of :mod:`ovpanoptic.atomic` (``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")``).
_ATOMIC_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one input: ``status`` is ``"done"``, ``"skipped"`` (done by an earlier
    run), ``"failed"`` or ``"stopped"`` (see :attr:`BatchReport.stopped`).

    :param result: the segmentation (local engine only; the Ray engine keeps results in its workers
        and reports ``segments`` and ``timings``).
    :param segments: the number of segments of a ``"done"`` image.
    :param timings: seconds per stage of a ``"done"`` image (:attr:`PanopticResult.timings`).
    :param worker: where it ran (``"local"``, or the Ray worker's ``node:pid``).
    """

    path: Path
    stem: str
    status: str
    error: str = ""
    result: PanopticResult | None = None
    files: tuple[Path, ...] = ()
    #: the plugin component that failed on this image (``ComponentError.component``), if one did
    component: str = ""
    segments: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)
    worker: str = "local"


@dataclass(frozen=True)
class BatchStop:
    """An error every further image would hit too (missing weights or packages, a full disk):
    the batch stops. ``exc`` is the original exception where the engine has it (local engine)."""

    error: str
    disk: bool = False
    exc: BaseException | None = None


@dataclass(frozen=True)
class ImageJob:
    """One image that needs work: its input ``path``, output ``stem``, position in the inputs
    (``index``) and the content ``digest`` it is recorded with."""

    path: Path
    stem: str
    index: int
    digest: str


@dataclass
class BatchReport:
    """The outcome of a batch.

    :param stopped: the image at which the batch stopped on an error every further image would hit
        too (missing weights or packages, a full disk), after some images were done; the error is
        its ``error``. ``None`` when the batch went through.
    :param finished: the combined files written at the end (``panoptic.json``, ...).
    :param outcomes: one per input handled, in the order they finished.
    """

    outdir: Path
    outcomes: list[ImageOutcome] = field(default_factory=list)
    stopped: ImageOutcome | None = None
    finished: list[Path] = field(default_factory=list)
    #: whether this run held the folder's lock (set once the manifest is open)
    locked: bool = False
    #: what the engine reports about itself (Ray: workers, pipelines built per worker, ...)
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(o.status == "done" for o in self.outcomes)

    @property
    def skipped(self) -> int:
        return sum(o.status == "skipped" for o in self.outcomes)

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


class Executor(Protocol):
    """How an engine segments the images of a batch.

    ``start()`` runs after the output folder was checked and before anything is written (connect,
    start workers, check they can build the pipeline; an error here leaves the folder as it was).
    ``execute(jobs)`` takes the jobs lazily and yields ``(job, ImageOutcome | BatchStop)`` as
    images finish, in any order; the batch closes the generator when it stops early. ``close()``
    stops every worker; it runs before the combined files are made and again at the very end (also
    after an error), so it must be idempotent.
    """

    def start(self) -> None: ...

    def execute(self, jobs: Iterator[ImageJob]) -> Iterator[tuple[ImageJob, ImageOutcome | BatchStop]]: ...

    def close(self) -> None: ...


def component_origins(pipe: Any, formats: Sequence[str], *, tracker: bool = False) -> dict[tuple[str, str], boundary.Origin]:
    """``(kind, name) -> Origin`` (plugin, distribution, version) of every component a batch uses:
    the configured proposal generator, classifier and fuser (and tracker), and the exporters ``formats``."""
    kinds = ("proposal_generator", "classifier", "fuser", *(("tracker",) if tracker else ()))
    wanted = [(k, getattr(pipe.config.pipeline, k)) for k in kinds]
    wanted += [("exporter", name) for name in formats]
    return {(kind, name): pipe.registry.origin(pipe.registry.component(kind, name).plugin) for kind, name in wanted}


def resolved_settings(pipe: Any, formats: Sequence[str], *, tracker: bool = False) -> dict[str, Any]:
    """What the components really run with, for a protocol: the resolved device, the device
    profile, the images per encoder pass (``batch_size``), and every component's full config (defaults, then the profile, then the preset and
    ``--set``). Resolving the device may import torch."""
    import dataclasses

    components: dict[str, dict[str, Any]] = {}
    for kind, name in component_origins(pipe, formats, tracker=tracker):
        cfg = pipe.component_config(kind, name)
        components.setdefault(kind, {})[name] = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    profile = pipe.device_profile
    return {
        "device": pipe.device, "device_profile": profile.name if profile is not None else None, "batch_size": pipe.batch_size,
        "components": components,
    }


def check_folder(outdir: Path, inputs: Sequence[Path]) -> None:
    """Refuse an unusable output folder before anything is written.

    :raises InputError: empty name, a dangling link, a file, not creatable or not writable, or it
        contains an input.
    """
    if not str(outdir).strip():
        raise InputError("the output folder is empty (-o ''): name a folder, e.g. -o out")
    check_output_folder(outdir, CLI_OUTPUT_FIX)
    within = [p for p in inputs if boundary.inside(p, outdir)]
    if within:
        raise InputError(
            f"input {within[0]} is inside the output folder {outdir} ({len(within)} input(s) are): outputs could overwrite "
            "inputs, and the next run would read outputs as inputs. Choose an output folder outside the inputs "
            "(e.g. -o next to the image folder), or leave the output folder out of the input pattern"
        )


def _check_exporters(pipe: Any, formats: Sequence[str], outdir: Path, vocabulary: Vocabulary) -> None:
    """Every exporter's ``check_output`` before anything is written, also for a folder that does not
    exist yet (a vocabulary an exporter cannot write is refused before the folder is made)."""
    for name in formats:
        exporter = pipe.component("exporter", name)
        if isinstance(exporter, OutputChecker):
            target = pipe.registry.target(pipe.registry.component("exporter", name))
            boundary.call(target, "check_output()", exporter.check_output, outdir, vocabulary, user_errors=boundary.EXPORT_ERRORS)


def remove_stale_temporaries(outdir: Path, folders: Sequence[Path] = ()) -> list[Path]:
    """Remove the temporary files of atomic writes (``.NAME.XXXXXXXX.tmp``) a killed run left in
    ``outdir``, its ``.ovpanoptic`` bookkeeping and ``folders`` (those of the batch's recorded
    files). Files of other names, and files in other folders, are never touched."""
    removed = []
    bookkeeping = [p for p in (outdir / ".ovpanoptic").rglob("*") if p.is_dir()] if (outdir / ".ovpanoptic").is_dir() else []
    for folder in {outdir, outdir / ".ovpanoptic", *bookkeeping, *folders}:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _ATOMIC_TEMPORARY.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return removed


def _remove_stale_temporaries_of(outdir: Path, records: Mapping[str, Record]) -> None:
    """:func:`remove_stale_temporaries` in the folders of the files ``records`` list."""
    remove_stale_temporaries(outdir, sorted({(outdir / rel).parent for r in records.values() for rel in r.files}))


def process_image(
    pipe: Any,
    vocabulary: Vocabulary,
    path: Path,
    stem: str,
    outdir: Path,
    formats: Sequence[str],
    *,
    segmenting: AbstractContextManager[Any] | None = None,
    exporting: AbstractContextManager[Any] | None = None,
) -> ImageOutcome | BatchStop:
    """Read, segment and export one image (its own files; combined files are made at the end).

    :param segmenting: held while the image is segmented, ``exporting`` while it is exported (e.g.
        locks, so that calls in several threads read and export while one segments: the Ray worker).
    :returns: the image's outcome (``"done"``, or ``"failed"`` for a fault of this image only: an
        unreadable image, a plugin component that failed on it), or a :class:`BatchStop` for an
        error every further image would hit too.
    """
    (outcome,) = process_images(pipe, vocabulary, [(path, stem)], outdir, formats, segmenting=segmenting, exporting=exporting)
    return outcome


def process_images(
    pipe: Any,
    vocabulary: Vocabulary,
    items: Sequence[tuple[Path, str]],
    outdir: Path,
    formats: Sequence[str],
    *,
    segmenting: AbstractContextManager[Any] | None = None,
    exporting: AbstractContextManager[Any] | None = None,
) -> list[ImageOutcome | BatchStop]:
    """:func:`process_image` of several images (``(path, stem)`` pairs), their image encoders run
    on them together first (:func:`encode_together`): read all, then segment each, then export
    each, under ``segmenting`` and ``exporting`` as :func:`process_image`.

    :returns: one outcome per item, in order; when one is a :class:`BatchStop` it is the last (the
        items after it are not done).
    """
    images = [guarded(path, stem, outdir, read_image, path, pipe.config.pipeline.max_pixels) for path, stem in items]
    segmented: list[PanopticResult | ImageOutcome | BatchStop] = []
    with segmenting or nullcontext():
        stop = encode_together(pipe, list(zip((path for path, _ in items), images)), outdir)
        if stop is not None:
            return [stop]
        for (path, stem), image in zip(items, images):
            step = image if isinstance(image, (ImageOutcome, BatchStop)) else segment_image(pipe, vocabulary, image, path, stem, outdir)
            segmented.append(step)
            if isinstance(step, BatchStop):
                break
    outcomes: list[ImageOutcome | BatchStop] = []
    with exporting or nullcontext():
        for (path, stem), image, step in zip(items, images, segmented):
            outcome = step if isinstance(step, (ImageOutcome, BatchStop)) else export_image(pipe, step, image, path, stem, outdir, formats)
            outcomes.append(outcome)
            if isinstance(outcome, BatchStop):
                break
    return outcomes


def encode_together(pipe: Any, images: Sequence[tuple[Path, Any]], outdir: Path) -> BatchStop | None:
    """:meth:`Pipeline.encode_batch <ovpanoptic.pipeline.Pipeline.encode_batch>` of the read
    images among ``images`` (``(path, image or its failed outcome)``) when ``pipe.batch_size`` is
    above 1 and two or more are read; a :class:`BatchStop` for an error every image would hit."""
    read = [(path, image) for path, image in images if not isinstance(image, (ImageOutcome, BatchStop))]
    if len(read) < 2 or pipe.batch_size < 2:
        return None
    outcome = guarded(read[0][0], "", outdir, pipe.encode_batch, [image for _, image in read], sources=[str(path) for path, _ in read])
    return outcome if isinstance(outcome, BatchStop) else None


def segment_image(pipe: Any, vocabulary: Vocabulary, image: Any, path: Path, stem: str, outdir: Path) -> PanopticResult | ImageOutcome | BatchStop:
    """The segmentation of a read image, or the outcome of its failure (see :func:`guarded`)."""
    return guarded(path, stem, outdir, lambda: pipe.segment(image, vocabulary, source=str(path)))


def export_image(pipe: Any, result: PanopticResult, image: Any, path: Path, stem: str, outdir: Path, formats: Sequence[str]) -> ImageOutcome | BatchStop:
    """Export one image's own files; its ``"done"`` outcome, or that of its failure."""
    written = guarded(path, stem, outdir, pipe.export, result, image, outdir, stem, formats, finish=False)
    if isinstance(written, (ImageOutcome, BatchStop)):
        return written
    return ImageOutcome(
        path, stem, "done", result=result, files=tuple(dict.fromkeys(written)), segments=len(result.segments),
        timings=dict(result.timings),
    )


def guarded(path: Path, stem: str, outdir: Path, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or the outcome its error means: ``"failed"`` for a fault of this
    image only (unreadable, bad input, a plugin component that failed on it), :class:`BatchStop`
    for one every further image would hit too (a disk that cannot be written, missing weights)."""
    try:
        return fn(*args, **kwargs)
    except (ImageReadError, InputError, ComponentError) as exc:  # this image only; the batch goes on
        if isinstance(exc, ComponentError):
            log.debug("%s: the plugin's traceback", path, exc_info=exc)
        error = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
        return ImageOutcome(path, stem, "failed", error, component=exc.component if isinstance(exc, ComponentError) else "")
    except OSError as exc:
        error = (
            f"cannot write into {outdir} ({exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}): "
            "free space or fix the permissions"
        )
        return BatchStop(error, disk=True, exc=exc)
    except OvpanopticError as exc:
        return BatchStop(str(exc), exc=exc)


def run_batch(
    pipe: Any,
    vocabulary: Vocabulary,
    inputs: Sequence[Path],
    outdir: Path,
    formats: Sequence[str],
    executor: Executor,
    *,
    overwrite: bool = False,
    on_image: Callable[[ImageOutcome], None] | None = None,
) -> BatchReport:
    """Segment ``inputs`` into ``outdir`` with the exporters ``formats``, resumably, the images
    segmented by ``executor`` (see the module docstring).

    :param pipe: a :class:`~ovpanoptic.pipeline.Pipeline` whose components are built (its
        exporters check the folder and assemble the combined files).
    :param overwrite: redo every image, removing the files the folder's previous batch recorded.
    :param on_image: called after each input with its :class:`ImageOutcome` (progress, printing).
    :raises InputError: the output folder is unusable; nothing written.
    :raises OvpanopticError: an error every image would hit (missing weights, a full disk, workers
        that cannot build the pipeline) before any image was done; the folder is left as it was.
        After some images were done, the batch stops instead and :attr:`BatchReport.stopped` says
        where and why.
    """
    outdir = Path(outdir)
    header = BatchHeader.create(pipe.config.to_dict(), vocabulary.to_dict(), formats)
    check_folder(outdir, inputs)
    stored, records, _ = Manifest.read(outdir) if outdir.is_dir() else (None, {}, set())
    if stored is not None and not overwrite:  # checked again under the lock by Manifest.open
        check_header(outdir, header, stored, records)
    if outdir.is_dir():
        check_no_video_run(outdir, overwrite=overwrite)
    if stored is None or not overwrite:
        _check_exporters(pipe, formats, outdir, vocabulary)
    report = BatchReport(outdir)
    created = not outdir.exists()
    manifest_is_new = stored is None or overwrite
    try:
        executor.start()
        _run(pipe, vocabulary, inputs, outdir, formats, header, overwrite, on_image, report, executor)
    except BaseException:
        # A fault that stops the whole batch before any image was done (missing weights, an
        # interrupt): leave the folder as it was. Only a run that held the folder's lock may touch
        # its manifest (a refused run must not delete the manifest of the run it was refused for).
        if report.locked and report.done == 0 and manifest_is_new:
            (outdir / MANIFEST_NAME).unlink(missing_ok=True)
            if created and outdir.is_dir() and not any(outdir.iterdir()):
                outdir.rmdir()
        raise
    finally:
        executor.close()
    return report


def _shared_files(records: Mapping[str, Record]) -> set[str]:
    """Files listed by more than one record (a folder-wide category table): never one image's own."""
    seen: dict[str, int] = {}
    for record in records.values():
        for rel in record.files:
            seen[rel] = seen.get(rel, 0) + 1
    return {rel for rel, n in seen.items() if n > 1}


def _run(
    pipe: Any,
    vocabulary: Vocabulary,
    inputs: Sequence[Path],
    outdir: Path,
    formats: Sequence[str],
    header: BatchHeader,
    overwrite: bool,
    on_image: Callable[[ImageOutcome], None] | None,
    report: BatchReport,
    executor: Executor,
) -> None:
    with Manifest.open(outdir, header, overwrite=overwrite) as manifest:
        report.locked = True
        if overwrite:
            _check_exporters(pipe, formats, outdir, vocabulary)
        _remove_stale_temporaries_of(outdir, manifest.records)
        digests: dict[Path, str] = {}
        for path in inputs:  # inputs moved since the last run keep their record (found by content)
            key = str(path.resolve())
            if key not in manifest.records:
                try:
                    digests[path] = file_digest(path)
                except OSError:
                    continue
                manifest.adopt(key, digests[path])
        stems = assign_stems(inputs, {key: r.stem for key, r in manifest.records.items()})
        shared = _shared_files(manifest.records)
        position = {path: i for i, path in enumerate(inputs)}

        def handled(outcome: ImageOutcome) -> None:
            report.outcomes.append(outcome)
            if on_image is not None:
                on_image(outcome)

        def jobs() -> Iterator[ImageJob]:
            """The images that need work; skipped and unreadable ones are handled on the way."""
            for index, path in enumerate(inputs):
                key = str(path.resolve())
                previous = manifest.records.get(key)
                try:
                    digest = digests.get(path) or file_digest(path)
                except OSError as exc:
                    outcome = ImageOutcome(path, stems[path], "failed", f"{path}: cannot read ({exc.strerror or exc})")
                    manifest.append(Record(key, "", stems[path], "failed", outcome.error))
                    handled(outcome)
                    continue
                if (
                    previous is not None
                    and previous.status == "done"
                    and previous.digest == digest
                    and all((outdir / rel).exists() for rel in previous.files)
                ):
                    handled(ImageOutcome(path, stems[path], "skipped", files=tuple(outdir / f for f in previous.files)))
                    continue
                yield ImageJob(path, stems[path], index, digest)

        try:
            results = executor.execute(jobs())
            try:
                for job, outcome in results:
                    if isinstance(outcome, BatchStop):
                        _stop(job, outcome, outdir, report)
                        break
                    _record(job, outcome, outdir, manifest, shared)
                    handled(outcome)
            finally:
                close = getattr(results, "close", None)
                if close is not None:
                    close()
        finally:
            # Stop the engine before the end: a worker that died mid-write (killed, out of memory)
            # left the temporary file of an atomic write, which nothing else would remove.
            executor.close()
            _remove_stale_temporaries_of(outdir, manifest.records)
            if report.done or report.skipped:
                finished = sorted((o for o in report.outcomes if o.status in ("done", "skipped")), key=lambda o: position[o.path])
                order = [o.stem for o in finished]
                inputs_keys = {str(p.resolve()) for p in inputs}
                order += [r.stem for k, r in manifest.records.items() if r.status == "done" and k not in inputs_keys]
                report.finished = pipe.finish(outdir, formats, order)
                manifest.finished([str(p.resolve().relative_to(outdir.resolve())) for p in report.finished])


def _stop(job: ImageJob, stop: BatchStop, outdir: Path, report: BatchReport) -> None:
    """A batch-wide error: raised when no image was done yet (nothing kept), else the batch stops."""
    if report.done == 0:
        if stop.disk:
            raise InputError(f"{stop.error}, then run the same command again") from stop.exc
        if stop.exc is not None:
            raise stop.exc
        raise OvpanopticError(stop.error)
    report.stopped = ImageOutcome(job.path, job.stem, "stopped", stop.error)


def _record(job: ImageJob, outcome: ImageOutcome, outdir: Path, manifest: Manifest, shared: set[str]) -> None:
    key = str(job.path.resolve())
    previous = manifest.records.get(key)
    if outcome.status == "failed" and previous is not None and previous.status == "done":
        for rel in previous.files:  # an earlier result of content that is no longer there
            if rel not in shared and boundary.inside(outdir / rel, outdir):
                (outdir / rel).unlink(missing_ok=True)
    files = tuple(str(Path(p).resolve().relative_to(outdir.resolve())) for p in outcome.files)
    manifest.append(Record(key, job.digest, job.stem, outcome.status, outcome.error, files, dict(outcome.timings)))  # type: ignore[arg-type]
