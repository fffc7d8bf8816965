"""The local engine: one process, image after image, resumable through the batch manifest.

Everything about the batch (checks before anything is written, the manifest, skipping finished
images, all-or-nothing outputs, the combined files at the end) is :mod:`.batch`'s, shared with the
Ray engine; this engine runs :func:`~.batch.process_image` in the calling process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..types import Vocabulary
from .batch import BatchReport, BatchStop, ImageJob, ImageOutcome, process_image, remove_stale_temporaries, run_batch

__all__ = ["BatchReport", "ImageOutcome", "LocalExecutor", "remove_stale_temporaries", "run_local"]


class LocalExecutor:
    """:class:`~.batch.Executor` that segments in this process with ``pipe``, in input order."""

    def __init__(self, pipe: Any, vocabulary: Vocabulary, outdir: Path, formats: Sequence[str]) -> None:
        self.pipe, self.vocabulary, self.outdir, self.formats = pipe, vocabulary, Path(outdir), tuple(formats)

    def start(self) -> None:
        """Nothing to start: the pipeline is the caller's."""

    def execute(self, jobs: Iterator[ImageJob]) -> Iterator[tuple[ImageJob, ImageOutcome | BatchStop]]:
        for job in jobs:
            yield job, process_image(self.pipe, self.vocabulary, job.path, job.stem, self.outdir, self.formats)

    def close(self) -> None:
        """Nothing to release."""


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
    """Segment ``inputs`` into ``outdir`` with the exporters ``formats``, resumably, in this process.

    :param pipe: a :class:`~ovpanoptic.pipeline.Pipeline` whose components are built.
    :param overwrite: redo every image, removing the files the folder's previous batch recorded.
    :param on_image: called after each input with its :class:`ImageOutcome` (progress, printing).
    :raises InputError: the output folder is unusable (see :mod:`.batch`); nothing written.
    :raises OvpanopticError: an error every image would hit (missing weights, a full disk) before
        any image was done; the folder is left as it was. After some images were done, the batch
        stops instead and :attr:`BatchReport.stopped` says where and why.
    """
    executor = LocalExecutor(pipe, vocabulary, outdir, formats)
    return run_batch(pipe, vocabulary, inputs, outdir, formats, executor, overwrite=overwrite, on_image=on_image)
