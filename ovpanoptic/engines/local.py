"""The local engine: one process, image after image, resumable through the batch manifest.

Before anything is written, :func:`run_local` checks the output folder: it must be a folder (or
creatable), writable, not in use by another run, hold no results made with another config,
vocabulary or formats (neither in its manifest nor, for exporters that keep combined files such as
``panoptic.json``, in those files), and contain none of the inputs (outputs could overwrite them,
and a later run would read them as inputs). Then it records each image in the manifest as it
finishes, and at the end lets the exporters assemble their combined files from every finished image,
in input order. A run of the same command after a crash or ``kill -9`` skips the images already done
(same content, every recorded file still there), removes the temporary files of atomic writes the
killed run left, and redoes the rest, ending with the same files as an uninterrupted run.

An image's outputs are all or nothing: when an image fails, the files its export wrote are removed,
and when an image done by an earlier run is redone (its content changed) and fails, its earlier
outputs are removed too, so no result of an input the folder no longer vouches for stays behind.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import boundary
from ..components import OutputChecker
from ..errors import ComponentError, ImageReadError, InputError, OvpanopticError
from ..imageio import read_image
from ..types import PanopticResult, Vocabulary
from .manifest import MANIFEST_NAME, BatchHeader, Manifest, Record, assign_stems, check_header, file_digest

__all__ = ["BatchReport", "ImageOutcome", "remove_stale_temporaries", "run_local"]

log = logging.getLogger(__name__)

#: Temporary files of :mod:`ovpanoptic.atomic` (``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")``).
_ATOMIC_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one input: ``status`` is ``"done"``, ``"skipped"`` (done by an earlier
    run), ``"failed"`` or ``"stopped"`` (see :attr:`BatchReport.stopped`)."""

    path: Path
    stem: str
    status: str
    error: str = ""
    result: PanopticResult | None = None
    files: tuple[Path, ...] = ()
    #: the plugin component that failed on this image (``ComponentError.component``), if one did
    component: str = ""


@dataclass
class BatchReport:
    """The outcome of a batch.

    :param stopped: the image at which the batch stopped on an error every further image would hit
        too (missing weights or packages, a full disk), after some images were done; the error is
        its ``error``. ``None`` when the batch went through.
    :param finished: the combined files written at the end (``panoptic.json``, ...).
    """

    outdir: Path
    outcomes: list[ImageOutcome] = field(default_factory=list)
    stopped: ImageOutcome | None = None
    finished: list[Path] = field(default_factory=list)
    #: whether this run held the folder's lock (set once the manifest is open)
    locked: bool = False

    @property
    def done(self) -> int:
        return sum(o.status == "done" for o in self.outcomes)

    @property
    def skipped(self) -> int:
        return sum(o.status == "skipped" for o in self.outcomes)

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def _check_folder(outdir: Path, inputs: Sequence[Path]) -> None:
    if not str(outdir).strip():
        raise InputError("the output folder is empty (-o ''): name a folder, e.g. -o out")
    if outdir.is_symlink() and not outdir.exists():
        raise InputError(f"the output folder {outdir} is a symbolic link to nothing: fix the link or choose another folder with -o")
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"the output folder {outdir} is a file: choose a folder with -o")
    probe_dir = outdir
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InputError(f"cannot create the output folder {outdir}: {probe_dir} is a file; choose another folder with -o")
    try:
        fd, name = tempfile.mkstemp(prefix=".ovpanoptic-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise InputError(f"cannot write into {probe_dir} ({exc.strerror or exc}): choose a writable output folder with -o") from None
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


def run_local(
    pipe: Any,
    vocabulary: Vocabulary,
    inputs: Sequence[Path],
    outdir: Path,
    formats: Sequence[str],
    *,
    overwrite: bool = False,
    on_image: Callable[[ImageOutcome], None] | None = None,
) -> BatchReport:
    """Segment ``inputs`` into ``outdir`` with the exporters ``formats``, resumably.

    :param pipe: a :class:`~ovpanoptic.pipeline.Pipeline` whose components are built.
    :param overwrite: redo every image, removing the files the folder's previous batch recorded.
    :param on_image: called after each input with its :class:`ImageOutcome` (progress, printing).
    :raises InputError: the output folder is unusable (see the module docstring); nothing written.
    :raises OvpanopticError: an error every image would hit (missing weights, a full disk) before
        any image was done; the folder is left as it was. After some images were done, the batch
        stops instead and :attr:`BatchReport.stopped` says where and why.
    """
    outdir = Path(outdir)
    header = BatchHeader.create(pipe.config.to_dict(), vocabulary.to_dict(), formats)
    _check_folder(outdir, inputs)
    stored, records, _ = Manifest.read(outdir) if outdir.is_dir() else (None, {}, set())
    if stored is not None and not overwrite:  # checked again under the lock by Manifest.open
        check_header(outdir, header, stored, records)
    if stored is None or not overwrite:
        _check_exporters(pipe, formats, outdir, vocabulary)
    report = BatchReport(outdir)
    created = not outdir.exists()
    manifest_is_new = stored is None or overwrite
    try:
        _run(pipe, vocabulary, inputs, outdir, formats, header, overwrite, on_image, report)
    except BaseException:
        # A fault that stops the whole batch before any image was done (missing weights, an
        # interrupt): leave the folder as it was. Only a run that held the folder's lock may touch
        # its manifest (a refused run must not delete the manifest of the run it was refused for).
        if report.locked and report.done == 0 and manifest_is_new:
            (outdir / MANIFEST_NAME).unlink(missing_ok=True)
            if created and outdir.is_dir() and not any(outdir.iterdir()):
                outdir.rmdir()
        raise
    return report


def _shared_files(records: dict[str, Record]) -> set[str]:
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
) -> None:
    with Manifest.open(outdir, header, overwrite=overwrite) as manifest:
        report.locked = True
        if overwrite:
            _check_exporters(pipe, formats, outdir, vocabulary)
        recorded_folders = {(outdir / rel).parent for r in manifest.records.values() for rel in r.files}
        remove_stale_temporaries(outdir, sorted(recorded_folders))
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
        try:
            for path in inputs:
                outcome = _one(pipe, vocabulary, path, stems[path], outdir, formats, manifest, digests.get(path), shared, report)
                if outcome is None:  # the batch stopped
                    break
                report.outcomes.append(outcome)
                if on_image is not None:
                    on_image(outcome)
        finally:
            if report.done or report.skipped:
                order = [stems[o.path] for o in report.outcomes if o.status in ("done", "skipped")]
                inputs_keys = {str(p.resolve()) for p in inputs}
                order += [r.stem for k, r in manifest.records.items() if r.status == "done" and k not in inputs_keys]
                report.finished = pipe.finish(outdir, formats, order)
                manifest.finished([str(p.resolve().relative_to(outdir.resolve())) for p in report.finished])


def _one(
    pipe: Any,
    vocabulary: Vocabulary,
    path: Path,
    stem: str,
    outdir: Path,
    formats: Sequence[str],
    manifest: Manifest,
    digest: str | None,
    shared: set[str],
    report: BatchReport,
) -> ImageOutcome | None:
    key = str(path.resolve())
    previous = manifest.records.get(key)
    try:
        digest = digest or file_digest(path)
    except OSError as exc:
        outcome = ImageOutcome(path, stem, "failed", f"{path}: cannot read ({exc.strerror or exc})")
        manifest.append(Record(key, "", stem, "failed", outcome.error))
        return outcome
    if (
        previous is not None
        and previous.status == "done"
        and previous.digest == digest
        and all((outdir / rel).exists() for rel in previous.files)
    ):
        return ImageOutcome(path, stem, "skipped", files=tuple(outdir / f for f in previous.files))
    try:
        outcome = _process(pipe, vocabulary, path, stem, outdir, formats)
    except (OvpanopticError, OSError) as exc:  # every further image would fail the same way
        error = str(exc)
        if isinstance(exc, OSError):
            error = (
                f"cannot write into {outdir} ({exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}): "
                "free space or fix the permissions"
            )
            if report.done == 0:
                raise InputError(f"{error}, then run the same command again") from exc
        if report.done == 0:
            raise
        report.stopped = ImageOutcome(path, stem, "stopped", error)
        return None
    if outcome.status == "failed" and previous is not None and previous.status == "done":
        for rel in previous.files:  # an earlier result of content that is no longer there
            if rel not in shared and boundary.inside(outdir / rel, outdir):
                (outdir / rel).unlink(missing_ok=True)
    files = tuple(str(p.resolve().relative_to(outdir.resolve())) for p in outcome.files)
    manifest.append(Record(key, digest, stem, outcome.status, outcome.error, files))  # type: ignore[arg-type]
    return outcome


def _process(pipe: Any, vocabulary: Vocabulary, path: Path, stem: str, outdir: Path, formats: Sequence[str]) -> ImageOutcome:
    try:
        image = read_image(path, pipe.config.pipeline.max_pixels)
        result = pipe.segment(image, vocabulary, source=str(path))
        written = pipe.export(result, image, outdir, stem, formats, finish=False)
    except (ImageReadError, InputError, ComponentError) as exc:  # this image only; the batch goes on
        if isinstance(exc, ComponentError):
            log.debug("%s: the plugin's traceback", path, exc_info=exc)
        error = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
        return ImageOutcome(path, stem, "failed", error, component=exc.component if isinstance(exc, ComponentError) else "")
    return ImageOutcome(path, stem, "done", result=result, files=tuple(dict.fromkeys(written)))
