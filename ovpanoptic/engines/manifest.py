"""The manifest of a batch: a JSON-lines file in the output folder that makes a batch resumable.

``OUTDIR/ovpanoptic-manifest.jsonl``: the first line is the batch's header (what every result in the
folder was made with: the config, the vocabulary and the formats, each with its digest); every
further line records one image (input path, content digest, output stem, status, error, files).
Lines are appended and flushed one at a time, so a run killed at any moment leaves a readable file
(a torn last line is ignored). A later run with the same command skips the images recorded as done
whose content is unchanged; a run with another config, vocabulary or formats is refused before
anything is written.

While a run writes to a folder it holds an exclusive lock on the folder
(:class:`~ovpanoptic.folderlock.FolderLock`, the lock video runs hold too) and on the manifest, so
two runs never write into one folder at once; a folder holding a video run is refused (``--overwrite``
replaces it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..boundary import inside
from ..errors import InputError
from ..folderlock import FolderLock

__all__ = [
    "MANIFEST_NAME",
    "BatchHeader",
    "Manifest",
    "Record",
    "assign_stems",
    "check_header",
    "check_no_video_run",
    "clear_batch",
    "file_digest",
    "plain_stem",
]

log = logging.getLogger(__name__)

#: File name of the manifest in the output folder.
MANIFEST_NAME = "ovpanoptic-manifest.jsonl"

#: Version of the manifest's format (first line, key ``manifest``).
MANIFEST_VERSION = 1

#: Pipeline settings that do not change results (where and how fast the models run), left out of the
#: config digest: a folder resumes with another device, thread count or batch size.
_NEUTRAL_SETTINGS = ("device", "cache_images", "threads", "batch_size")


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex, first 16 characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BatchHeader:
    """What every result in an output folder was made with.

    :param config: the resolved config as a dict (settings that do not change results removed).
    :param vocabulary: the vocabulary as a dict (:meth:`~ovpanoptic.types.Vocabulary.to_dict`).
    :param formats: the exporters, in order.
    """

    config: Mapping[str, Any]
    vocabulary: Mapping[str, Any]
    formats: tuple[str, ...]

    @classmethod
    def create(cls, config: Mapping[str, Any], vocabulary: Mapping[str, Any], formats: Sequence[str]) -> BatchHeader:
        return cls(_results_config(config), json.loads(json.dumps(vocabulary)), tuple(sorted(dict.fromkeys(formats))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": MANIFEST_VERSION,
            "config_digest": _digest(self.config),
            "vocabulary_digest": _digest(self.vocabulary),
            "formats": list(self.formats),
            "config": self.config,
            "vocabulary": self.vocabulary,
        }

    def difference(self, other: Mapping[str, Any]) -> str:
        """What differs between this header and a stored one, in words ("" when nothing does)."""
        if sorted(other.get("formats", [])) != list(self.formats):
            return f"the formats ({', '.join(other.get('formats', []))} there, {', '.join(self.formats)} now)"
        if other.get("vocabulary_digest") != _digest(self.vocabulary):
            old = {c["id"]: c for c in other.get("vocabulary", {}).get("categories", [])}
            for cat in self.vocabulary.get("categories", []):
                was = old.pop(cat["id"], None)
                if was is None:
                    return f"the vocabulary (category {cat['id']} {cat['name']!r} is new)"
                if was != cat:
                    kind = lambda c: "thing" if c["isthing"] else "stuff"  # noqa: E731
                    return (
                        f"the vocabulary (category {cat['id']} is {was['name']!r} ({kind(was)}) there, "
                        f"{cat['name']!r} ({kind(cat)}) now)"
                    )
            if old:
                first = next(iter(old.values()))
                return f"the vocabulary (category {first['id']} {first['name']!r} is gone)"
            return "the vocabulary"
        theirs = _results_config(other.get("config", {}))  # a folder of an older version may list more settings
        if _digest(theirs) != _digest(self.config):
            return f"the config ({_first_difference(theirs, self.config) or 'its settings'})"
        return ""


def _results_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as JSON data, without the settings that do not change results (:data:`_NEUTRAL_SETTINGS`)."""
    cfg = json.loads(json.dumps(config, default=str))
    for key in _NEUTRAL_SETTINGS:
        cfg.get("pipeline", {}).pop(key, None)
    return cfg


def _first_difference(old: Any, new: Any, where: str = "") -> str:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new)):
            sub = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                return f"{sub} {'added' if key not in old else 'removed'}"
            found = _first_difference(old[key], new[key], sub)
            if found:
                return found
        return ""
    return "" if old == new else f"{where} {old!r} there, {new!r} now"


@dataclass(frozen=True)
class Record:
    """One image of a batch.

    :param input: the input path as given (resolved to an absolute path).
    :param digest: :func:`file_digest` of the input when it was processed.
    :param stem: the output name stem of the image (unique in the folder).
    :param status: ``"done"`` or ``"failed"``.
    :param error: why it failed.
    :param files: the files written for it, relative to the output folder.
    :param timings: seconds per pipeline stage of a done image (``PanopticResult.timings``), so a
        resumed run still reports the time of every image.
    """

    input: str
    digest: str
    stem: str
    status: Literal["done", "failed"]
    error: str = ""
    files: tuple[str, ...] = field(default_factory=tuple)
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {"input": self.input, "digest": self.digest, "stem": self.stem, "status": self.status, "error": self.error, "files": list(self.files)}
        if self.timings:
            data["timings"] = {k: round(float(v), 6) for k, v in self.timings.items()}
        return data


def check_header(outdir: Path, header: BatchHeader, stored: Mapping[str, Any], records: Mapping[str, Record]) -> None:
    """Refuse a folder whose batch was made with another config, vocabulary or formats.

    :raises InputError: saying what differs and how to go on.
    """
    diff = header.difference(stored)
    if diff:
        raise InputError(
            f"{outdir} holds results made with other settings: {diff}. Mixing them would leave results "
            f"that disagree in one folder. Choose another output folder with -o, or add --overwrite to "
            f"replace the {sum(r.status == 'done' for r in records.values())} result(s) there"
        )


def check_no_video_run(outdir: Path, *, overwrite: bool = False) -> None:
    """Refuse a folder holding a ``segment-video`` run (unless ``overwrite``: it is replaced then).

    :raises InputError: naming the video run and how to go on.
    """
    from ..video.output import STATE_DIR, holds_video_run

    if not overwrite and holds_video_run(outdir):
        raise InputError(
            f"{outdir} holds a video run of 'ovpanoptic segment-video' ({STATE_DIR}/, panoptic/, panoptic.json, tracks.csv, ...): "
            "image results written there would replace its panoptic.json next to its frames. Choose another output folder "
            "with -o, or add --overwrite to replace the video's results"
        )


def _remove_recorded(outdir: Path, records: Mapping[str, Record], finished: set[str]) -> None:
    """Remove the files a batch recorded (inside ``outdir`` only)."""
    for rel in sorted({f for r in records.values() for f in r.files} | finished):
        target = outdir / rel
        if not inside(target, outdir):
            log.warning("not removing %s, recorded in %s but outside the folder", target, outdir / MANIFEST_NAME)
            continue
        target.unlink(missing_ok=True)


def clear_batch(outdir: Path) -> None:
    """Remove an image batch from ``outdir``: the files its manifest records, then the manifest
    (other files are left alone). The caller holds the folder's lock. Nothing when there is none."""
    path = Path(outdir) / MANIFEST_NAME
    if not path.is_file():
        return
    _, records, finished = Manifest.read(Path(outdir))
    _remove_recorded(Path(outdir), records, finished)
    path.unlink(missing_ok=True)
    bookkeeping = Path(outdir) / ".ovpanoptic"
    for folder in sorted((p for p in bookkeeping.rglob("*") if p.is_dir()), reverse=True) if bookkeeping.is_dir() else []:
        if not any(folder.iterdir()):
            folder.rmdir()
    if bookkeeping.is_dir() and not any(bookkeeping.iterdir()):
        bookkeeping.rmdir()


def _record(data: Any) -> Record | None:
    """A record from a manifest line, or ``None`` when the line is not one."""
    if not isinstance(data, dict):
        return None
    fields = ("input", "digest", "stem")
    if not all(isinstance(data.get(k), str) for k in fields) or data.get("status") not in ("done", "failed"):
        return None
    files = data.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    timings = data.get("timings", {})
    if not isinstance(timings, dict) or not all(isinstance(v, (int, float)) for v in timings.values()):
        timings = {}
    return Record(data["input"], data["digest"], data["stem"], data["status"], str(data.get("error", "")), tuple(files), timings)


class Manifest:
    """The open manifest of one output folder, locked for this run (see the module docstring).

    Use :meth:`open`; close with :meth:`close` (or as a context manager).
    """

    def __init__(self, outdir: Path, header: BatchHeader, records: dict[str, Record], fh: Any, lock: FolderLock | None = None) -> None:
        self.outdir = outdir
        self.header = header
        #: input path -> its latest record
        self.records = records
        self._fh = fh
        self._lock = lock

    @property
    def path(self) -> Path:
        return self.outdir / MANIFEST_NAME

    @staticmethod
    def read(outdir: Path) -> tuple[dict[str, Any] | None, dict[str, Record], set[str]]:
        """The stored header, the latest record of each input, and the combined files written at the
        end of runs, of a folder (``(None, {}, set())`` when it has no manifest).

        Lines that are torn (a run killed while writing them) or not records are skipped.

        :raises InputError: the manifest is not a readable ovpanoptic manifest.
        """
        path = Path(outdir) / MANIFEST_NAME
        if path.is_dir():
            raise InputError(f"{path} is a folder, not a manifest: remove it or choose another output folder with -o")
        if not path.is_file():
            return None, {}, set()
        header: dict[str, Any] | None = None
        records: dict[str, Record] = {}
        finished: set[str] = set()
        try:
            text = path.read_text("utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"cannot read {path} ({exc.strerror or exc}): fix its permissions or choose another output folder") from None
        for number, line in enumerate(text.splitlines(), 1):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                data = None
            if header is None:
                if not isinstance(data, dict) or data.get("manifest") != MANIFEST_VERSION:
                    raise InputError(
                        f"{path} is not an ovpanoptic manifest of version {MANIFEST_VERSION} (its first line is not the "
                        "batch header): choose another output folder with -o, or delete the file to start the folder afresh"
                    )
                header = data
                continue
            record = _record(data)
            if record is None:
                if isinstance(data, dict) and isinstance(data.get("finished"), list):
                    finished.update(str(f) for f in data["finished"])
                else:
                    log.info("%s: line %d is not a record (torn by a killed run, or edited); ignored", path, number)
                continue
            records[record.input] = record
        return header, records, finished

    @classmethod
    def open(cls, outdir: Path, header: BatchHeader, *, overwrite: bool = False) -> Manifest:
        """Open (or start) the manifest of ``outdir`` for a run, holding its lock.

        :param overwrite: start afresh: the files recorded by the previous batch (inside the folder)
            and the manifest are removed, and so is a video run's layout (other files in the folder
            are left alone).
        :raises InputError: another run (image batch or video) holds the folder, it holds a video
            run, or its batch was made with another config, vocabulary or formats (the message says
            which and how to go on), or it is unreadable.
        """
        import fcntl

        outdir = Path(outdir)
        path = outdir / MANIFEST_NAME
        lock = FolderLock.acquire(outdir)
        try:
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open (and locked) for the run
        except OSError as exc:
            lock.release()
            raise InputError(f"cannot open {path} ({exc.strerror or exc}): fix the permissions or choose another output folder") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            lock.release()
            raise InputError(f"another ovpanoptic run is writing into {outdir}: wait for it, or choose another output folder with -o") from None
        try:
            check_no_video_run(outdir, overwrite=overwrite)
            from ..video.output import holds_video_run, remove_video_run

            if overwrite and holds_video_run(outdir):
                remove_video_run(outdir)
            stored, records, finished = cls.read(outdir)
            if stored is not None and overwrite:
                _remove_recorded(outdir, records, finished)
                fh.truncate(0)
                stored, records = None, {}
            if stored is not None:
                check_header(outdir, header, stored, records)
                fh.seek(0, os.SEEK_END)
                if fh.tell():  # a torn last line: end it, so the next record starts on its own line
                    with open(path, "rb") as raw:
                        raw.seek(-1, os.SEEK_END)
                        if raw.read(1) != b"\n":
                            fh.write("\n")
            else:
                fh.seek(0, os.SEEK_END)
                if fh.tell():  # a header line that was torn: start the file again
                    fh.truncate(0)
                fh.write(json.dumps(header.to_dict(), sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        except BaseException:
            fh.close()
            lock.release()
            raise
        return cls(outdir, header, records, fh, lock)

    def adopt(self, key: str, digest: str) -> Record | None:
        """Give the input ``key`` the record of a moved input: a record with the same content whose
        input path no longer exists (the folder was moved or remounted). Returns it, or ``None``."""
        for old_key, record in list(self.records.items()):
            if record.digest == digest and old_key != key and not Path(old_key).exists():
                moved = dataclasses.replace(record, input=key)
                del self.records[old_key]
                self.records[key] = moved
                return moved
        return None

    def finished(self, files: Sequence[str]) -> None:
        """Record the combined files written at the end of a run (``--overwrite`` removes them)."""
        self._write({"finished": list(files)})

    def append(self, record: Record) -> None:
        """Record one image (flushed and synced before returning)."""
        self._write(record.to_dict())
        self.records[record.input] = record

    def _write(self, data: dict[str, Any]) -> None:
        try:
            self._fh.write(json.dumps(data, sort_keys=True) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise InputError(
                f"cannot write the manifest {self.path} ({exc.strerror or exc}): free space or fix the permissions, then run "
                "the same command again (finished images are skipped)"
            ) from None

    def close(self) -> None:
        """Release the folder's lock."""
        try:
            self._fh.close()
        except OSError as exc:  # a full disk: what could be written was flushed already
            log.warning("closing %s: %s", self.path, exc)
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Longest stem taken from a file name (bytes); longer ones are cut (and made unique as usual).
MAX_STEM_BYTES = 150


def plain_stem(path: Path) -> str:
    """The file name's stem, made a valid output name: Unicode NFC (composed and decomposed ``café``
    give one name), leading dots dropped (``.x.png`` -> ``x``), control characters and bytes that are
    not UTF-8 (from old cameras or zip files) replaced by ``_``, at most :data:`MAX_STEM_BYTES`
    bytes; ``image`` when nothing is left."""
    raw = path.stem
    cleaned = "".join("_" if ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in raw)
    stem = unicodedata.normalize("NFC", cleaned).lstrip(".").strip() or "image"
    while len(stem.encode("utf-8")) > MAX_STEM_BYTES:
        stem = stem[:-1]
    return stem


def assign_stems(inputs: Iterable[Path], recorded: Mapping[str, str] | None = None) -> dict[Path, str]:
    """A unique, deterministic output stem for every input of a batch.

    An input recorded in the manifest keeps its recorded stem. Others get their file name's stem
    (leading dots dropped, at most :data:`MAX_STEM_BYTES` bytes);
    when that is taken (two folders with ``x.jpg``), ``x-1``, ``x-2``, ... skipping every stem that
    another input has or would naturally have (so ``c/x-1.png`` keeps ``x-1``). Stems are compared
    ignoring case, so outputs never collide on case-insensitive file systems.

    :param inputs: the batch's inputs, in order.
    :param recorded: input path (absolute, as in :class:`Record`) -> its recorded stem.
    """
    inputs = list(inputs)
    recorded = dict(recorded or {})
    taken = {stem.casefold() for stem in recorded.values()}
    natural = {plain_stem(p).casefold() for p in inputs}
    out: dict[Path, str] = {}
    for path in inputs:
        key = str(path.resolve())
        if key in recorded:
            out[path] = recorded[key]
            continue
        stem = plain_stem(path)
        if stem.casefold() in taken:
            n = 1
            while f"{stem}-{n}".casefold() in taken or f"{stem}-{n}".casefold() in natural:
                n += 1
            stem = f"{stem}-{n}"
        taken.add(stem.casefold())
        out[path] = stem
    return out
