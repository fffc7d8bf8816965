"""Atomic file writes: a temporary file in the destination folder, then a rename; and the one check
of an output folder before anything is written into it (:func:`check_output_folder`).

The file gets the permissions any other tool's new file gets (``0o666`` less the process umask), or
keeps the permissions of the file it replaces; the temporary file (``.NAME.XXXX.tmp``, private while
it is written) never shows under the final name.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError

__all__ = ["CLI_OUTPUT_FIX", "atomic_write_bytes", "atomic_write_text", "check_output_folder", "default_file_mode"]

#: How a command-line user chooses another output folder (the ``fix`` of :func:`check_output_folder`).
CLI_OUTPUT_FIX = "choose another output folder with -o"

#: File systems of the kernel that look like folders but hold no files (``/proc``, ``/sys``, ...).
_KERNEL_FILE_SYSTEMS = frozenset(
    {"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs", "pstore", "bpf", "efivarfs"}
)


def _kernel_file_system(path: Path) -> str | None:
    """The type of the kernel file system ``path`` lies on (``proc``, ``sysfs``, ...), or ``None``
    for storage (or when the mount table cannot be read)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            mounts = [line.split()[1:3] for line in fh if len(line.split()) >= 3]
    except OSError:
        return None
    resolved = path.resolve()
    best: tuple[int, str] | None = None
    for point, fstype in mounts:
        mount = Path(point.replace("\\040", " "))
        if resolved.is_relative_to(mount) and (best is None or len(mount.parts) > best[0]):
            best = (len(mount.parts), fstype)
    return best[1] if best is not None and best[1] in _KERNEL_FILE_SYSTEMS else None


def check_output_folder(path: str | os.PathLike[str], fix: str = CLI_OUTPUT_FIX) -> Path:
    """Refuse an output folder nothing can be written into, before anything is: an empty name, a
    symbolic link to nothing, a file (or a path under a file), or a place where no file can be
    created (a read-only folder, ``/proc``, ``/sys``). The folder itself is not created; a
    temporary file is created and removed in it (or in its nearest existing parent) to see that
    writing works. The command line (``-o``), :meth:`~ovpanoptic.pipeline.Pipeline.export` and the
    video output all check their folder here.

    :param fix: how the caller's user chooses another folder, e.g. :data:`CLI_OUTPUT_FIX`.
    :return: the folder as a :class:`~pathlib.Path`.
    :raises InputError: naming the folder, what is wrong with it, and ``fix``.
    """
    if not str(path).strip():
        raise InputError(f"the output folder is empty: {fix}")
    folder = Path(path)
    if folder.is_symlink() and not folder.exists():
        raise InputError(f"the output folder {folder} is a symbolic link to nothing: fix the link or {fix}")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the output folder {folder} is a file, not a folder: {fix}")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot create the output folder {folder}: {probe} is a file; {fix}")
    try:
        # named like an atomic write's temporary (.NAME.XXXXXXXX.tmp): a run killed right here leaves a file
        # the next run's clean-up of stale temporaries removes
        fd, name = tempfile.mkstemp(prefix=".ovpanoptic-probe.", suffix=".tmp", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        kernel = _kernel_file_system(probe)
        why = f"it is on the kernel's {kernel} file system, which holds no files" if kernel else exc.strerror or str(exc)
        if probe == folder:
            raise InputError(f"cannot write into the output folder {folder} ({why}): {fix}") from None
        raise InputError(f"cannot create the output folder {folder}: cannot write into {probe} ({why}); {fix}") from None
    return folder


def default_file_mode() -> int:
    """``0o666`` less the process umask: the mode of a new file created with ``open()``."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it (and restore it at once)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    target = Path(path)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = default_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
