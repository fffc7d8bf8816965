"""The local engine: one process, image after image, resumable through the batch manifest.

Before anything is written, :func:`run_local` checks the output folder: it must be a folder (or
creatable), writable, not in use by another run, and hold no results made with another config,
vocabulary or formats (neither in its manifest nor, for exporters that keep combined files such as
``panoptic.json``, in those files). Then it records each image in the manifest as it finishes; a run
of the same command after a crash or ``kill -9`` skips the images already done (same content),
removes the temporary files the killed run left, and redoes the rest, ending with the same files as
an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
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

__all__ = ["BatchReport", "ImageOutcome", "run_local"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one input: ``status`` is ``"done"``, ``"skipped"`` (done by an earlier
    run) or ``"failed"``."""

    path: Path
    stem: str
    status: str
    error: str = ""
    result: PanopticResult | None = None
    files: tuple[Path, ...] = ()


@dataclass
class BatchReport:
    """The outcome of a batch.

    :param stopped: the image at which the batch stopped on an error every further image would hit
        too (missing weights, a package, a bad class name), after some images were done; the error
        is its ``error``. ``None`` when the batch went through.
    """

    outdir: Path
    outcomes: list[ImageOutcome] = field(default_factory=list)
    stopped: ImageOutcome | None = None

    @property
    def done(self) -> int:
        return sum(o.status == "done" for o in self.outcomes)

    @property
    def skipped(self) -> int:
        return sum(o.status == "skipped" for o in self.outcomes)

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def _check_writable(outdir: Path) -> None:
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
        raise InputError(
            f"cannot write into {probe_dir} ({exc.strerror or exc}): choose a writable output folder with -o"
        ) from None


def _check_exporters(pipe: Any, formats: Sequence[str], outdir: Path, vocabulary: Vocabulary) -> None:
    if not outdir.is_dir():
        return
    for name in formats:
        exporter = pipe.component("exporter", name)
        if isinstance(exporter, OutputChecker):
            target = pipe.registry.target(pipe.registry.component("exporter", name))
            boundary.call(target, "check_output()", exporter.check_output, outdir, vocabulary, user_errors=boundary.EXPORT_ERRORS)


def remove_stale_temporaries(outdir: Path) -> list[Path]:
    """Remove the temporary files of atomic writes (``.NAME.XXXX.tmp``) that a killed run left."""
    removed = []
    for path in outdir.rglob(".*.tmp"):
        if path.is_file():
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
    :raises OvpanopticError: an error every image would hit (missing weights, a bad class name)
        before any image was done; the folder is left as it was. After some images were done, the
        batch stops instead and :attr:`BatchReport.stopped` says where and why.
    """
    outdir = Path(outdir)
    header = BatchHeader.create(pipe.config.to_dict(), vocabulary.to_dict(), formats)
    _check_writable(outdir)
    stored, records = Manifest.read(outdir) if outdir.is_dir() else (None, {})
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
        # interrupt): leave the folder as it was.
        if report.done == 0 and manifest_is_new:
            (outdir / MANIFEST_NAME).unlink(missing_ok=True)
            if created and outdir.is_dir() and not any(outdir.iterdir()):
                outdir.rmdir()
        raise
    return report


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
        if overwrite:
            _check_exporters(pipe, formats, outdir, vocabulary)
        remove_stale_temporaries(outdir)
        stems = assign_stems(inputs, {key: r.stem for key, r in manifest.records.items()})
        for path in inputs:
            key = str(path.resolve())
            stem = stems[path]
            previous = manifest.records.get(key)
            try:
                digest = file_digest(path)
            except OSError as exc:
                outcome = ImageOutcome(path, stem, "failed", f"{path}: cannot read ({exc.strerror or exc})")
                manifest.append(Record(key, "", stem, "failed", outcome.error))
            else:
                if previous is not None and previous.status == "done" and previous.digest == digest:
                    outcome = ImageOutcome(path, stem, "skipped", files=tuple(outdir / f for f in previous.files))
                else:
                    try:
                        outcome = _process(pipe, vocabulary, path, stem, outdir, formats)
                    except OvpanopticError as exc:  # every further image would fail the same way
                        if report.done == 0:
                            raise
                        report.stopped = ImageOutcome(path, stem, "stopped", str(exc))
                        return
                    files = tuple(str(p.resolve().relative_to(outdir.resolve())) for p in outcome.files)
                    manifest.append(Record(key, digest, stem, outcome.status, outcome.error, files))  # type: ignore[arg-type]
            report.outcomes.append(outcome)
            if on_image is not None:
                on_image(outcome)


def _process(pipe: Any, vocabulary: Vocabulary, path: Path, stem: str, outdir: Path, formats: Sequence[str]) -> ImageOutcome:
    try:
        image = read_image(path, pipe.config.pipeline.max_pixels)
        result = pipe.segment(image, vocabulary, source=str(path))
        written = pipe.export(result, image, outdir, stem, formats)
    except (ImageReadError, InputError, ComponentError) as exc:  # this image only; the batch goes on
        if isinstance(exc, ComponentError):
            log.debug("%s: the plugin's traceback", path, exc_info=exc)
        return ImageOutcome(path, stem, "failed", str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}")
    return ImageOutcome(path, stem, "done", result=result, files=tuple(dict.fromkeys(written)))
