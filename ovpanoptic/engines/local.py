"""The local engine: one process, resumable through the batch manifest.

Everything about the batch (checks before anything is written, the manifest, skipping finished
images, all-or-nothing outputs, the combined files at the end) is :mod:`.batch`'s, shared with the
Ray engine; this engine runs the steps of :func:`~.batch.process_image` in the calling process.

Overlapped (the default): while the models segment image *k*, one thread decodes and resizes
the next images (at most ``prefetch`` ahead) and another writes image *k - 1*'s files, so the
device does not wait for the CPU's reading and exporting. Segmentation stays in the calling thread,
one image at a time; with ``pipeline.batch_size`` above 1 the next images read are first put through
the image encoders together (:meth:`~ovpanoptic.pipeline.Pipeline.encode_batch`; a GPU gains, the
results are those of single images). Outcomes are reported in input order, and the batch records an image only
when no export is running (the manifest is written between exports, never during one), so the
files, the manifest and the combined files are byte for byte those of the sequential order
(``overlap=False``), which ``tests/test_batch_edges.py`` checks.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..imageio import read_image
from ..types import Vocabulary
from .batch import (
    BatchReport,
    BatchStop,
    ImageJob,
    ImageOutcome,
    encode_together,
    export_image,
    guarded,
    process_images,
    remove_stale_temporaries,
    run_batch,
    segment_image,
)

#: Images decoded ahead of the one being segmented (each is held in memory until its turn).
PREFETCH = 2

__all__ = ["BatchReport", "ImageOutcome", "LocalExecutor", "remove_stale_temporaries", "run_local"]


class LocalExecutor:
    """:class:`~.batch.Executor` that segments in this process with ``pipe``, in input order.

    :param overlap: read ahead and export behind in threads (see the module docstring);
        ``False``: each image read, segmented and exported before the next.
    :param prefetch: images read ahead when overlapping (>= 1).
    """

    def __init__(
        self, pipe: Any, vocabulary: Vocabulary, outdir: Path, formats: Sequence[str], *, overlap: bool = True, prefetch: int = PREFETCH
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        self.pipe, self.vocabulary, self.outdir, self.formats = pipe, vocabulary, Path(outdir), tuple(formats)
        self.overlap, self.prefetch = overlap, prefetch

    def start(self) -> None:
        """Nothing to start: the pipeline is the caller's."""

    def execute(self, jobs: Iterator[ImageJob]) -> Iterator[tuple[ImageJob, ImageOutcome | BatchStop]]:
        if not self.overlap:
            while chunk := list(itertools.islice(jobs, self.pipe.batch_size)):
                outcomes = process_images(self.pipe, self.vocabulary, [(j.path, j.stem) for j in chunk], self.outdir, self.formats)
                yield from zip(chunk, outcomes)
            return
        yield from self._overlapped(jobs)

    def _overlapped(self, jobs: Iterator[ImageJob]) -> Iterator[tuple[ImageJob, ImageOutcome | BatchStop]]:
        max_pixels = self.pipe.config.pipeline.max_pixels
        reader = ThreadPoolExecutor(1, thread_name_prefix="ovpanoptic-read")
        writer = ThreadPoolExecutor(1, thread_name_prefix="ovpanoptic-export")
        reads: deque[tuple[ImageJob, Future[Any]]] = deque()
        exporting: tuple[ImageJob, Future[ImageOutcome | BatchStop]] | None = None
        batch = self.pipe.batch_size  # read again before each image: a device profile's value applies once the device is resolved
        encoded: set[int] = set()  # the jobs (id) of the last batch through the encoders, not segmented yet

        def read_ahead() -> None:
            # Runs in this thread between exports' outcomes: the jobs generator may write the
            # manifest (images it skips or cannot read), which must not happen during an export.
            while len(reads) < max(self.prefetch, batch):  # a batch's images are read before its first is segmented
                job = next(jobs, None)
                if job is None:
                    return
                reads.append((job, reader.submit(guarded, job.path, job.stem, self.outdir, read_image, job.path, max_pixels)))

        try:
            read_ahead()
            while reads:
                job, read = reads.popleft()
                image = read.result()
                step = None
                batch = self.pipe.batch_size
                if batch > 1 and id(job) not in encoded and not isinstance(image, (ImageOutcome, BatchStop)):
                    # this image and the next ones read: through the encoders together
                    group = [(job, image)] + [(j, r.result()) for j, r in list(reads)[: batch - 1]]
                    encoded = {id(j) for j, _ in group}
                    step = encode_together(self.pipe, [(j.path, im) for j, im in group], self.outdir)
                encoded.discard(id(job))
                if step is None:
                    step = image if isinstance(image, (ImageOutcome, BatchStop)) else segment_image(
                        self.pipe, self.vocabulary, image, job.path, job.stem, self.outdir
                    )
                if exporting is not None:  # image k-1's files are written: report it
                    yield exporting[0], exporting[1].result()
                    exporting = None
                read_ahead()
                if isinstance(step, (ImageOutcome, BatchStop)):
                    yield job, step
                    continue
                exporting = (job, writer.submit(export_image, self.pipe, step, image, job.path, job.stem, self.outdir, self.formats))
            if exporting is not None:
                yield exporting[0], exporting[1].result()
                exporting = None
        finally:
            # Stopped early (the batch closed the generator, an error, an interrupt): images read
            # ahead are dropped; an export under way finishes (all or nothing) before returning.
            reader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)

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
    overlap: bool = True,
) -> BatchReport:
    """Segment ``inputs`` into ``outdir`` with the exporters ``formats``, resumably, in this process.

    :param pipe: a :class:`~ovpanoptic.pipeline.Pipeline` whose components are built.
    :param overwrite: redo every image, removing the files the folder's previous batch recorded.
    :param on_image: called after each input with its :class:`ImageOutcome` (progress, printing).
    :param overlap: read ahead and export behind in threads (see the module docstring).
    :raises InputError: the output folder is unusable (see :mod:`.batch`); nothing written.
    :raises OvpanopticError: an error every image would hit (missing weights, a full disk) before
        any image was done; the folder is left as it was. After some images were done, the batch
        stops instead and :attr:`BatchReport.stopped` says where and why.
    """
    executor = LocalExecutor(pipe, vocabulary, outdir, formats, overlap=overlap)
    return run_batch(pipe, vocabulary, inputs, outdir, formats, executor, overwrite=overwrite, on_image=on_image)
