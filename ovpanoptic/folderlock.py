"""One run per output folder: an exclusive lock on the folder itself.

Image batches (:class:`~ovpanoptic.engines.manifest.Manifest`) and video runs
(:class:`~ovpanoptic.video.output.VideoOutput`) both hold :class:`FolderLock` on their output
folder while they write, so two runs of either kind never write into one folder at once: the second
is refused before it writes anything. The lock is ``flock`` on the folder's own file descriptor: it
leaves no file behind and is released by the system when the process dies (``kill -9`` included).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .atomic import check_output_folder
from .errors import InputError

__all__ = ["FolderLock"]

log = logging.getLogger(__name__)


class FolderLock:
    """An exclusive lock on an output folder, held until :meth:`release` (or the end of a ``with``).

    :ivar path: the folder.
    :ivar created: whether :meth:`acquire` created the folder (a run that writes nothing removes it).
    """

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path = path
        self.created = created
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str | Path) -> FolderLock:
        """Create ``path`` if needed and lock it.

        :raises InputError: another run holds the folder, it is a file, or it cannot be created or
            opened (:func:`~ovpanoptic.atomic.check_output_folder`, the check every output folder gets).
        """
        import fcntl

        folder = check_output_folder(path)
        created = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise InputError(f"cannot open the output folder {folder} ({exc.strerror or exc}): fix the permissions or choose another -o") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"another ovpanoptic run is writing into {folder}: wait for it to end (then run this command again), "
                "or choose another output folder with -o"
            ) from None
        except OSError as exc:  # a file system without locks: go on, as before locks existed
            log.warning("cannot lock %s (%s); make sure no other run writes into it", folder, exc.strerror or exc)
        return cls(folder, fd, created)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, *, remove_if_empty: bool = False) -> None:
        """Release the lock (idempotent); ``remove_if_empty``: remove the folder if this lock
        created it and it is still empty (a run that wrote nothing leaves nothing)."""
        if self._fd is None:
            return
        try:
            if remove_if_empty and self.created and self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()
        except OSError:
            pass  # someone wrote into it meanwhile: keep it
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]
            self._fd = None
