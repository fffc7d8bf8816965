"""The Ray engine: images (or videos) segmented by long-lived pipelines in Ray actors.

Ray (https://docs.ray.io) is an optional dependency (``pip install 'ovpanoptic[ray]'``); this module
imports it only when an engine starts. One :class:`PipelineWorker` actor per worker holds one
:class:`~ovpanoptic.pipeline.Pipeline` for the whole job: its models load once, on the worker's
first image (or in :meth:`PipelineWorker.ready`, which also builds every component and encodes the
vocabulary, so a worker that cannot do the job is reported before anything is written).

The driver (the process that runs the command) keeps the batch's bookkeeping exactly as the local
engine does (:mod:`.batch`: checks, the manifest and its lock, skipping, recording, the combined
files at the end); it streams the images that need work to the workers, at most
:attr:`RayOptions.queue_per_worker` per worker at a time, and records each result as it comes back.
A worker reads its next image and exports its last one while it segments (two calls at a time, one
segmentation at a time: :class:`PipelineWorker`), as the local engine overlaps them. When the
workers' ``pipeline.batch_size`` is above 1 (the CUDA device profiles), each call carries that many
images, which the worker puts through its image encoders together
(:meth:`PipelineWorker.process_many`). Workers write each
image's own files into the output folder with the same atomic writes as the local engine, so the folder must be on storage every node sees (one machine: any folder; a
cluster: a shared file system mounted at the same path), and so must the inputs.

Failures: an image that fails (unreadable, a plugin error) is recorded as failed, as locally. A
worker that dies (killed, out of memory, its node lost) is replaced by a new one and its images are
given to the workers again; an image on which workers died :data:`MAX_ATTEMPTS` times is recorded
as failed, and after :data:`MAX_REPLACEMENTS` replacements per worker the batch stops (what was done
is kept). A killed driver leaves a folder the next run of the same command resumes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDependencyError, OvpanopticError
from ..plugins import disabled_from_env
from ..types import Vocabulary
from .batch import (
    BatchReport,
    BatchStop,
    ImageJob,
    ImageOutcome,
    component_origins,
    process_image,
    process_images,
    resolved_settings,
    run_batch,
)

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_REPLACEMENTS",
    "PipelineWorker",
    "RayExecutor",
    "RayOptions",
    "RaySession",
    "import_ray",
    "run_ray",
    "run_videos_ray",
    "worker_config",
]

log = logging.getLogger(__name__)

#: Workers that may die on one image before it is recorded as failed.
MAX_ATTEMPTS = 3
#: Replacements of dead workers per worker slot before the batch stops.
MAX_REPLACEMENTS = 3
#: Seconds to wait for the head node of ``--address`` to accept a connection.
PROBE_TIMEOUT_S = 10.0
#: Seconds to wait for what listens at ``--address`` to answer as a gRPC (HTTP/2) server does.
HANDSHAKE_TIMEOUT_S = 5.0
#: An HTTP/2 client's connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5): a
#: gRPC server (Ray's GCS, or its client server for ``ray://``) answers with a SETTINGS frame.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_HTTP2_SETTINGS = 0x04
#: The pinned Ray release (``requirements/lock.txt``) named in install hints.
RAY_PIN = "ray==2.60.0"


def import_ray() -> Any:
    """``import ray``, or an error that says how to install it.

    :raises MissingDependencyError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine ray needs Ray, which is not installed ({exc}): pip install 'ovpanoptic[ray]' "
            f"(or pip install '{RAY_PIN}'), or leave out --engine ray to run in this process"
        ) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine runs.

    :param address: ``None`` starts a Ray instance on this machine for the run (stopped at the
        end); ``"auto"`` joins the cluster started on this machine with ``ray start``;
        ``"HOST:PORT"`` (or ``ray://HOST:PORT``) joins that cluster.
    :param workers: pipelines (actors) to run; default: as many as the cluster's CPUs (or GPUs
        with ``gpus_per_worker``) allow.
    :param gpus_per_worker: GPUs each worker reserves (``0.5``: two workers per GPU); ``0``: CPU
        workers.
    :param cpus_per_worker: CPUs each worker reserves (also its torch threads).
    :param queue_per_worker: calls handed to a worker at a time (one running, the rest waiting, so
        a worker never idles between images); a call carries one image, or the workers'
        ``pipeline.batch_size`` images when that is above 1.
    :param overlap: a worker reads its next image and exports its last one while it segments (two
        calls at a time in the actor's threads, one segmentation at a time: see :class:`PipelineWorker`),
        as the local engine overlaps them; ``False``: one image after another.
    :param start_timeout_s: seconds to wait for every worker to build its pipeline.
    :raises InputError: a value out of range.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    queue_per_worker: int = 2
    start_timeout_s: float = 900.0
    overlap: bool = True

    def __post_init__(self) -> None:
        if self.address is not None and not str(self.address).strip():
            raise InputError("--address is empty: give auto, HOST:PORT, or leave it out to start Ray on this machine")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1):
            raise InputError(f"--workers must be a whole number >= 1, got {self.workers!r}")
        for name in ("gpus_per_worker", "cpus_per_worker"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise InputError(f"--{name.replace('_', '-')} must be a number >= 0, got {value!r}")
        if self.cpus_per_worker == 0 and self.gpus_per_worker == 0:
            raise InputError("a worker needs a CPU or a GPU: --cpus-per-worker 0 goes only with --gpus-per-worker > 0")
        if self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise InputError(f"--gpus-per-worker above 1 must be a whole number, got {self.gpus_per_worker}")
        if not isinstance(self.queue_per_worker, int) or self.queue_per_worker < 1:
            raise InputError(f"queue_per_worker must be >= 1, got {self.queue_per_worker!r}")
        if not self.start_timeout_s > 0:
            raise InputError(f"start_timeout_s must be > 0, got {self.start_timeout_s!r}")


def worker_config(config: Any, options: RayOptions) -> Any:
    """The config the workers build their pipelines from: ``pipeline.device`` set for Ray's
    placement (``"auto"`` becomes ``"cpu"`` for CPU workers; a GPU worker sees only the GPU Ray
    gives it, so ``"auto"`` and ``"cuda"`` mean that GPU).

    :raises InputError: a device that contradicts the placement (``cuda:1``, ``cuda`` without
        ``--gpus-per-worker``, ``cpu`` with it).
    """
    device = str(config.pipeline.device).strip()
    gpu = options.gpus_per_worker > 0
    if device.startswith("cuda:"):
        raise InputError(
            f"--device {device}: with --engine ray, Ray gives each worker its GPU; use --gpus-per-worker 1 (or 0.5, ...) "
            "and --device auto or cuda"
        )
    if gpu and device in ("cpu", "mps"):
        raise InputError(f"--device {device} contradicts --gpus-per-worker {options.gpus_per_worker}: leave one of them out")
    if not gpu and device == "cuda":
        raise InputError("--device cuda with --engine ray needs --gpus-per-worker (e.g. 1), so that Ray gives each worker a GPU")
    if not gpu and device == "auto":
        return config.with_overrides(["pipeline.device='cpu'"])
    return config


def _component_origins(pipe: Any, formats: Sequence[str], *, tracker: bool = False) -> dict[str, str]:
    """``"kind name" -> "distribution version"`` of the components a job uses (compared across nodes)."""
    return {f"{k} {n}": f"{o.distribution} {o.version}" for (k, n), o in component_origins(pipe, formats, tracker=tracker).items()}


class PipelineWorker:
    """A Ray actor's state: one pipeline for the whole job (wrapped with ``ray.remote`` by the engine).

    :param config: the workers' :class:`~ovpanoptic.config.Config` (:func:`worker_config`).
    :param vocabulary: the vocabulary as :meth:`Vocabulary.to_dict`.
    :param formats: the exporters every image is written with.
    :param outdir: the output folder (absolute, on storage this worker sees).
    :param disable_plugins: plugins blocked in the driver, blocked here too.
    :param tracker: build the tracker too (video jobs).

    Overlap (:attr:`RayOptions.overlap`): the actor then runs two calls at a time in threads (Ray's
    ``max_concurrency=2``); :meth:`process` reads its image outside any lock, segments under a lock (one
    segmentation at a time, so a GPU never holds two) and exports under another (one export at a time,
    as the local engine's single writer thread): the next image is read and the last exported while
    one is segmented. A video (:meth:`process_video`) holds the segmentation lock for its whole run.
    """

    def __init__(
        self, config: Any, vocabulary: Mapping[str, Any], formats: Sequence[str], outdir: str, disable_plugins: Sequence[str], tracker: bool = False
    ) -> None:
        self._config = config
        self._vocabulary = Vocabulary.from_dict(vocabulary)
        self._formats = tuple(formats)
        self._outdir = Path(outdir)
        self._disable = tuple(disable_plugins)
        self._tracker = tracker
        self._pipe: Any = None
        self._name = f"{socket.gethostname()}:{os.getpid()}"
        self._building = threading.Lock()  # the pipeline is built once, whichever call comes first
        self._segmenting = threading.Lock()
        self._exporting = threading.Lock()
        self._counting = threading.Lock()
        #: pipelines this worker built (1 for its whole life) and images it segmented
        self.pipelines_built = 0
        self.images = 0

    def _pipeline(self) -> Any:
        with self._building:
            return self._built()

    def _built(self) -> Any:
        if self._pipe is None:
            from ..pipeline import Pipeline

            pipe = Pipeline(self._config, disable_plugins=self._disable)
            pipe.build_components(self._formats)
            if self._tracker:
                pipe.component("tracker")
            pipe.prepare_vocabulary(self._vocabulary)
            self._pipe = pipe
            self.pipelines_built += 1
        return self._pipe

    def ready(self) -> dict[str, Any]:
        """Build the pipeline (components, vocabulary); what the driver checks against its own."""
        from .. import __version__

        pipe = self._pipeline()
        threads = None
        if "torch" in __import__("sys").modules:
            threads = __import__("torch").get_num_threads()
        return {
            "worker": self._name,
            "ovpanoptic": __version__,
            "components": _component_origins(pipe, self._formats, tracker=self._tracker),
            "device": pipe.device,
            "torch_threads": threads,
            "batch_size": pipe.batch_size,
            "batch_size_from": pipe.batch_size_source,
            "resolved": json.loads(json.dumps(resolved_settings(pipe, self._formats, tracker=self._tracker), default=str)),
        }

    def process(self, path: str, stem: str) -> ImageOutcome | BatchStop:
        """Read, segment and export one image into the output folder, as :func:`~.batch.process_image`
        does (with the overlap of the class docstring); the outcome
        comes back without the segmentation itself (``segments`` and ``timings`` say enough)."""
        return self._sent(process_image(
            self._pipeline(), self._vocabulary, Path(path), stem, self._outdir, self._formats,
            segmenting=self._segmenting, exporting=self._exporting,
        ))

    def process_many(self, items: Sequence[tuple[str, str]]) -> list[ImageOutcome | BatchStop]:
        """:meth:`process` of several images (``(path, stem)`` pairs) whose image encoders run
        together (``pipeline.batch_size`` above 1: :func:`~.batch.process_images`); one outcome per
        image, in order, a :class:`~.batch.BatchStop` last if one stopped them."""
        outcomes = process_images(
            self._pipeline(), self._vocabulary, [(Path(p), s) for p, s in items], self._outdir, self._formats,
            segmenting=self._segmenting, exporting=self._exporting,
        )
        return [self._sent(outcome) for outcome in outcomes]

    def _sent(self, outcome: ImageOutcome | BatchStop) -> ImageOutcome | BatchStop:
        """An outcome as it travels back to the driver (counted when done)."""
        if isinstance(outcome, ImageOutcome) and outcome.status == "done":
            with self._counting:
                self.images += 1
        if isinstance(outcome, BatchStop):
            return dataclasses.replace(outcome, exc=None)  # the error's text travels, not its object
        return dataclasses.replace(outcome, result=None, worker=self._name)

    def process_video(self, job: Any, settings: Any) -> Any:
        """Segment one video into its folder (:func:`~.video.segment_video_into`); a video that
        cannot be read is a ``"failed"`` summary, an error every video would hit a :class:`BatchStop`."""
        from ..errors import InputError
        from .video import VideoSummary, segment_video_into

        try:
            with self._segmenting:
                summary = segment_video_into(self._pipeline(), self._vocabulary, job, settings)
        except InputError as exc:
            return VideoSummary(job.input, job.outdir, "failed", error=str(exc), worker=self._name)
        except OvpanopticError as exc:
            return BatchStop(str(exc))
        if summary.status == "done":
            with self._counting:
                self.images += 1
        return dataclasses.replace(summary, worker=self._name)

    def stats(self) -> dict[str, Any]:
        """How much this worker did: pipelines built, images segmented, and ``encode_batches``:
        ``{images: calls}`` of its batched encoder passes (``pipeline.batch_size``)."""
        batches = dict(self._pipe.encode_batches) if self._pipe is not None else {}
        return {"worker": self._name, "pipelines_built": self.pipelines_built, "images": self.images, "encode_batches": batches}


def _handshake(conn: socket.socket) -> str:
    """Greet what listens on ``conn`` as an HTTP/2 client: ``""`` when it answers as a gRPC server
    does (a SETTINGS frame), else what it did instead, in words."""
    conn.settimeout(HANDSHAKE_TIMEOUT_S)
    received = b""
    try:
        conn.sendall(_HTTP2_HELLO)
        while len(received) < 9:
            block = conn.recv(80)  # the 9 bytes of a frame header, or the start of a line of text
            if not block:
                break
            received += block
    except socket.timeout:
        if not received:
            return f"it did not answer within {HANDSHAKE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"it dropped the connection ({exc.strerror or exc})"
    if len(received) >= 9 and received[3] == _HTTP2_SETTINGS and int.from_bytes(received[5:9], "big") & 0x7FFFFFFF == 0:
        return ""
    if not received:
        return "it closed the connection without a word"
    text = received.decode("ascii").splitlines()[0][:60] if received.isascii() else received[:9].hex(" ")
    return f"it answered {text!r}"


class RaySession:
    """Connect to Ray for one job (a context manager): start a Ray instance of its own on this
    machine when ``options.address`` is ``None`` (never a cluster already running there, nor the
    one ``RAY_ADDRESS`` names), else join the cluster at the address, after checking that a Ray
    head node (a gRPC server) answers there. A session already
    connected by the caller (``ray.init`` in their program) is used and left connected.

    :raises MissingDependencyError: Ray is not installed.
    :raises InputError: the cluster cannot be reached.
    """

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.ray: Any = None
        self._owned = False

    def _probe(self) -> None:
        """Refuse an address nobody answers at before Ray starts retrying it (Ray retries an
        unreachable head for minutes, and ignores Ctrl-C meanwhile).

        :raises InputError: a malformed ``HOST:PORT``, a port out of range, a host that does not
            resolve, or nothing listening within :data:`PROBE_TIMEOUT_S`.
        """
        address = str(self.options.address).strip()
        if address == "auto" or address.startswith("local"):
            return
        hostport = address.split("://", 1)[1] if "://" in address else address
        host, sep, port_text = hostport.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InputError(f"--address {address!r} is not HOST:PORT with a port from 1 to 65535 (e.g. 10.0.0.5:6379), or auto")
        try:
            conn = socket.create_connection((host.strip("[]"), int(port_text)), timeout=PROBE_TIMEOUT_S)
        except OSError as exc:
            raise InputError(
                f"cannot reach the Ray cluster at --address {address} ({exc.strerror or exc}). Start it with 'ray start --head "
                "--port PORT' on the head node and pass HEAD:PORT (or auto on a node of the cluster), or leave out --address "
                "to start Ray on this machine"
            ) from None
        with conn:
            answer = _handshake(conn)
        if answer:
            raise InputError(
                f"--address {address} is not a Ray cluster: something listens there, but {answer}, where Ray's head node "
                "(a gRPC server) answers at once. Give the port of the head node's GCS (the --port of 'ray start --head', "
                "default 6379; 'ray status' on the head node prints the address), or leave out --address to start Ray on "
                "this machine"
            )

    def __enter__(self) -> RaySession:  # noqa: PYI034 - as Manifest
        ray = self.ray = import_ray()
        if ray.is_initialized():
            return self
        if self.options.address is not None:
            self._probe()
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True, "configure_logging": True}
        if self.options.address is None:
            # "local": a Ray instance of its own, even when a cluster was started on this machine
            # ('ray start') or RAY_ADDRESS names one (ray.init() without an address would join it)
            kwargs.update(address="local", include_dashboard=False)
        else:
            kwargs["address"] = self.options.address
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise InputError(
                f"cannot connect to the Ray cluster at --address {self.options.address} ({exc}). If Ray's log above says "
                "InvalidAuthToken, give this machine the cluster's token (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH, see "
                "docs/scale.md); else check that 'ray status' works on the head node"
            ) from None
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"cannot start Ray ({exc}): check --address, or leave it out to start Ray on this machine") from None
        self._owned = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned and self.ray is not None:
            self.ray.shutdown()

    def resources(self) -> dict[str, float]:
        """The cluster's total resources (``CPU``, ``GPU``, ...)."""
        return dict(self.ray.cluster_resources())


def _worker_count(options: RayOptions, resources: Mapping[str, float], jobs: int | None) -> int:
    """How many workers to start (see :attr:`RayOptions.workers`).

    :raises InputError: the cluster lacks what one worker (or ``--workers`` of them) needs.
    """
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    fits = []
    if options.cpus_per_worker > 0:
        fits.append(int(cpus // options.cpus_per_worker + 1e-9))
    if options.gpus_per_worker > 0:
        fits.append(int(gpus // options.gpus_per_worker + 1e-9))
    most = min(fits)
    if most < 1:
        raise InputError(
            f"the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s); one worker needs {options.cpus_per_worker:g} CPU(s) and "
            f"{options.gpus_per_worker:g} GPU(s): lower --cpus-per-worker/--gpus-per-worker or add nodes"
        )
    if options.workers is not None and options.workers > most:
        raise InputError(
            f"--workers {options.workers} needs {options.workers * options.cpus_per_worker:g} CPU(s) and "
            f"{options.workers * options.gpus_per_worker:g} GPU(s); the Ray cluster has {cpus:g} and {gpus:g}: "
            f"use --workers {most} or fewer, or add nodes"
        )
    count = options.workers or most
    return max(1, min(count, jobs)) if jobs is not None and options.workers is None else count


class RayExecutor:
    """:class:`~.batch.Executor` that hands images to :class:`PipelineWorker` actors.

    :param session: an entered :class:`RaySession`.
    :param pipe: the driver's pipeline (its config and components are what the workers must match).
    :param jobs: how many inputs the batch has at most (no more workers than that are started).
    """

    def __init__(
        self,
        session: RaySession,
        pipe: Any,
        vocabulary: Vocabulary,
        outdir: Path,
        formats: Sequence[str],
        options: RayOptions,
        *,
        disable_plugins: Sequence[str] = (),
        jobs: int | None = None,
        tracker: bool = False,
        config: Any = None,
    ) -> None:
        self.session, self.pipe, self.vocabulary, self.tracker = session, pipe, vocabulary, tracker
        self.outdir, self.formats, self.options = Path(outdir).resolve(), tuple(formats), options
        # the driver's blocks, from --disable-plugin and its environment, hold in every worker too
        self.disable_plugins, self.jobs = tuple(dict.fromkeys([*disabled_from_env(), *disable_plugins])), jobs
        self.config = config if config is not None else worker_config(pipe.config, options)
        self._actors: list[Any] = []
        self._remote_class: Any = None
        self._replacements: list[int] = []
        self.info: list[dict[str, Any]] = []
        self.stats: list[dict[str, Any]] = []

    # -- workers -----------------------------------------------------------------------------

    def _new_actor(self) -> Any:
        if self._remote_class is None:
            self._remote_class = self.session.ray.remote(PipelineWorker).options(
                num_cpus=self.options.cpus_per_worker, num_gpus=self.options.gpus_per_worker, max_restarts=0,
                max_concurrency=2 if self.options.overlap else 1,
            )
        return self._remote_class.remote(self.config, self.vocabulary.to_dict(), self.formats, str(self.outdir), self.disable_plugins, self.tracker)

    def start(self) -> None:
        """Start the workers and wait until each has built its pipeline; check they match ours.

        :raises OvpanopticError: a worker cannot build the pipeline, or builds it from other
            versions of ovpanoptic or of a plugin than this machine.
        """
        ray = self.session.ray
        count = _worker_count(self.options, self.session.resources(), self.jobs)
        self._actors = [self._new_actor() for _ in range(count)]
        self._replacements = [0] * count
        log.info("started %d Ray worker(s)", count)
        refs = [a.ready.remote() for a in self._actors]
        _, waiting = ray.wait(refs, num_returns=len(refs), timeout=self.options.start_timeout_s)
        if waiting:
            raise OvpanopticError(
                f"{len(waiting)} of {count} Ray worker(s) did not start within {self.options.start_timeout_s:g} s: the cluster may "
                "lack free CPUs/GPUs (see 'ray status'), or loading the models takes longer"
            )
        self.info = [self._get(ref, "building its pipeline") for ref in refs]
        self._check_workers(self.info)

    def _get(self, ref: Any, doing: str) -> Any:
        ray = self.session.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)  # the worker's own exception (Ray's text wraps it in its traceback)
            if isinstance(cause, OvpanopticError):
                raise OvpanopticError(f"a Ray worker failed {doing}: {cause}") from None
            raise
        except ray.exceptions.RayActorError as exc:
            raise OvpanopticError(f"a Ray worker died {doing}: {_first_line(exc)}") from None

    def _check_workers(self, infos: Sequence[Mapping[str, Any]]) -> None:
        from .. import __version__

        ours = _component_origins(self.pipe, self.formats, tracker=self.tracker)
        for info in infos:
            if info["ovpanoptic"] != __version__:
                raise OvpanopticError(
                    f"Ray worker {info['worker']} runs ovpanoptic {info['ovpanoptic']}, this machine {__version__}: install the "
                    "same version on every node, or results would differ"
                )
            for key, where in ours.items():
                theirs = info["components"].get(key)
                if theirs != where:
                    raise OvpanopticError(
                        f"Ray worker {info['worker']} builds the {key} from {theirs}, this machine from {where}: install the same "
                        "plugins (same versions) on every node"
                    )

    def _replace(self, slot: int, reason: str) -> bool:
        """Start a new worker in ``slot``; ``False`` when the slot was replaced too often."""
        self._replacements[slot] += 1
        if self._replacements[slot] > MAX_REPLACEMENTS:
            return False
        log.warning("a Ray worker died (%s); starting another", reason)
        self._actors[slot] = self._new_actor()
        return True

    # -- the job -----------------------------------------------------------------------------

    def execute(self, jobs: Iterator[ImageJob]) -> Iterator[tuple[ImageJob, ImageOutcome | BatchStop]]:
        """Images to the workers (:meth:`PipelineWorker.process`), results as they finish."""

        def failed(job: ImageJob, why: str) -> ImageOutcome:
            return ImageOutcome(job.path, job.stem, "failed", f"{job.path}: {why}")

        batch = min((int(info.get("batch_size", 1)) for info in self.info), default=1)
        if batch < 2:
            return self.dispatch(jobs, lambda actor, job: actor.process.remote(str(job.path), job.stem), failed)
        return self._batched(jobs, batch, failed)

    def _batched(
        self, jobs: Iterator[ImageJob], batch: int, failed: Callable[[ImageJob, str], ImageOutcome]
    ) -> Iterator[tuple[ImageJob, ImageOutcome | BatchStop]]:
        """:meth:`execute` with the workers' ``pipeline.batch_size`` above 1: ``batch`` images per
        call (:meth:`PipelineWorker.process_many`), so a worker's encoders take them together."""
        log.info(
            "each Ray worker takes %d images per call, through its image encoders together (pipeline.batch_size, from %s)",
            batch, "; ".join(sorted({str(info.get("batch_size_from", "?")) for info in self.info})),
        )
        chunks = iter(lambda: tuple(itertools.islice(jobs, batch)), ())
        results = self.dispatch(
            chunks, lambda actor, chunk: actor.process_many.remote([(str(j.path), j.stem) for j in chunk]),
            lambda chunk, why: [failed(job, why) for job in chunk],
        )
        for chunk, outcomes in results:
            if isinstance(outcomes, BatchStop):  # the workers kept dying
                yield chunk[0], outcomes
                return
            yield from zip(chunk, outcomes)

    def dispatch(self, jobs: Iterator[Any], submit: Callable[[Any, Any], Any], failed: Callable[[Any, str], Any]) -> Iterator[tuple[Any, Any]]:
        """Hand ``jobs`` to the workers (``submit(actor, job) -> ObjectRef``) and yield ``(job,
        result)`` as they finish. A job on which :data:`MAX_ATTEMPTS` workers died yields
        ``failed(job, why)``; dead workers are replaced (:data:`MAX_REPLACEMENTS` per slot, then a
        :class:`BatchStop`)."""
        ray = self.session.ray
        pending: dict[Any, tuple[Any, int]] = {}  # ref -> (job, slot)
        load = [0] * len(self._actors)
        retry: deque[Any] = deque()
        attempts: dict[int, int] = {}
        source = iter(jobs)
        exhausted = False
        try:
            while True:
                while True:  # one image at a time to the least loaded worker, so work spreads evenly
                    slot = min(range(len(self._actors)), key=lambda s: load[s])
                    if load[slot] >= self.options.queue_per_worker:
                        break
                    if retry:
                        job = retry.popleft()
                    else:
                        job = None if exhausted else next(source, None)
                        if job is None:
                            exhausted = True
                            break
                    pending[submit(self._actors[slot], job)] = (job, slot)
                    load[slot] += 1
                if not pending:
                    return
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job, slot = pending.pop(ref)
                load[slot] -= 1
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    key = id(job)
                    attempts[key] = attempts.get(key, 0) + 1
                    dead = _first_line(exc)
                    log.warning(
                        "a Ray worker did not return %s (%s: %s); giving it out again", getattr(job, "path", getattr(job, "input", job)),
                        type(exc).__name__, dead,
                    )
                    if attempts[key] >= MAX_ATTEMPTS:
                        yield job, failed(
                            job, f"{MAX_ATTEMPTS} Ray workers died while segmenting it (last: {dead}); too large for a worker's "
                            "memory, or a plugin that crashes on it",
                        )
                    else:
                        retry.append(job)
                    if self._actors[slot] is not None and self._is_dead(slot):
                        for other, (other_job, other_slot) in list(pending.items()):
                            if other_slot == slot:  # queued on the dead worker: they fail too, give them out again
                                del pending[other]
                                retry.append(other_job)
                        load[slot] = 0
                        if not self._replace(slot, dead):
                            yield job, BatchStop(f"Ray workers kept dying ({MAX_REPLACEMENTS + 1} in one slot; last: {dead})")
                            return
                    continue
                yield job, outcome
        finally:
            for ref in pending:
                ray.cancel(ref)

    def _is_dead(self, slot: int) -> bool:
        ray = self.session.ray
        try:
            ray.get(self._actors[slot].stats.remote(), timeout=30)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return True
        return False

    def close(self) -> None:
        """Collect the workers' statistics, then stop them."""
        ray = self.session.ray
        if not self._actors or ray is None or not ray.is_initialized():
            return
        refs = [a.stats.remote() for a in self._actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=10)
        for ref in ready:
            try:
                self.stats.append(ray.get(ref))
            except ray.exceptions.RayError:
                pass
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_ray(
    pipe: Any,
    vocabulary: Vocabulary,
    inputs: Sequence[Path],
    outdir: Path,
    formats: Sequence[str],
    options: RayOptions,
    *,
    overwrite: bool = False,
    on_image: Callable[[ImageOutcome], None] | None = None,
    disable_plugins: Sequence[str] = (),
    config: Any = None,
) -> BatchReport:
    """:func:`~.local.run_local` on Ray: the same checks, manifest and files, the images segmented
    by :class:`PipelineWorker` actors (see the module docstring).

    :param pipe: the driver's pipeline, components built (the workers build theirs from its config).
    :param options: where and how many workers (:class:`RayOptions`).
    :param disable_plugins: plugins blocked in the workers too (the driver's ``--disable-plugin``).
    :param config: the workers' config (default: :func:`worker_config` of ``pipe.config``); the
        driver's pipeline may then run on the CPU while the workers use GPUs.
    :raises MissingDependencyError: Ray is not installed.
    :raises InputError: the output folder is unusable, the cluster cannot be reached or lacks
        resources, a device that contradicts the placement; nothing written.
    :raises OvpanopticError: workers that cannot build the pipeline (missing plugins, weights),
        before anything is written.
    """
    config = config if config is not None else worker_config(pipe.config, options)  # a contradicting device: refused before Ray starts
    started = time.perf_counter()
    with RaySession(options) as session:
        executor = RayExecutor(
            session, pipe, vocabulary, outdir, formats, options, disable_plugins=disable_plugins, jobs=len(inputs), config=config
        )
        report = run_batch(pipe, vocabulary, inputs, outdir, formats, executor, overwrite=overwrite, on_image=on_image)
        report.engine = {
            "engine": "ray",
            "workers": executor.info,
            "stats": executor.stats,
            "seconds": time.perf_counter() - started,
        }
    return report


def run_videos_ray(
    pipe: Any,
    vocabulary: Vocabulary,
    jobs: Sequence[Any],
    settings: Any,
    options: RayOptions,
    *,
    on_video: Callable[[Any], None] | None = None,
    disable_plugins: Sequence[str] = (),
    config: Any = None,
) -> tuple[list[Any], dict[str, Any]]:
    """:func:`~.video.run_videos` on Ray: each worker segments one video at a time into the
    video's folder (a video's frames depend on one another, so a video is the unit of work).

    :param jobs: :class:`~.video.VideoJob` s (absolute paths, on storage every node sees).
    :returns: the summaries in input order, and what the engine reports (workers, their counts).
    :raises OvpanopticError: as :func:`run_ray`, and an error every video would hit.
    """
    from .video import VideoSummary

    config = config if config is not None else worker_config(pipe.config, options)
    started = time.perf_counter()
    summaries: dict[int, Any] = {}
    position = {id(job): i for i, job in enumerate(jobs)}
    with RaySession(options) as session:
        executor = RayExecutor(
            session, pipe, vocabulary, Path.cwd(), (), options, disable_plugins=disable_plugins, jobs=len(jobs), tracker=True, config=config
        )
        try:
            executor.start()
            results = executor.dispatch(
                iter(jobs),
                lambda actor, job: actor.process_video.remote(job, settings),
                lambda job, why: VideoSummary(job.input, job.outdir, "failed", error=f"{job.input}: {why}"),
            )
            for job, result in results:
                if isinstance(result, BatchStop):
                    raise OvpanopticError(result.error)
                summaries[position[id(job)]] = result
                if on_video is not None:
                    on_video(result)
        finally:
            executor.close()
    engine = {"engine": "ray", "workers": executor.info, "stats": executor.stats, "seconds": time.perf_counter() - started}
    return [summaries[i] for i in sorted(summaries)], engine
