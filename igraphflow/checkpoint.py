r"""Atomic checkpoint files: a payload of tensors and plain settings, tagged with its kind."""

from __future__ import annotations

__all__ = ["atomic_file", "save_atomic", "load_checked", "reading_contents"]

import contextlib
import hashlib
import os
import re
import secrets
import stat
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import torch

from ._checks import as_file_path, as_output_file, check_input_file


def _temporary_stem(path: Path) -> str:
    # Names near the system's limit get no room for the suffix: a digest stands in for them.
    return path.name if len(path.name) <= 200 else hashlib.sha256(path.name.encode()).hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or no pid this system has
        return True
    return True


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, name: str = "checkpoint path") -> Iterator[BinaryIO]:
    r"""A binary file that replaces ``path`` when the block ends, so that a reader sees either
    the old file or the new one.

    The file is written beside its destination (``.NAME.PID.RANDOM.tmp``), flushed to disk and
    renamed over ``path``. It is created as a plain ``open`` creates a file (the umask and the
    directory's default ACLs apply), and takes the permissions of the file it replaces (a link
    is replaced by the file, as by any rename). A block that raises leaves ``path`` as it was
    and removes the temporary; a writer that was killed cannot, so on POSIX systems every write
    removes the temporaries of ``path`` left by processes no longer running on this machine.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> with atomic_file(path) as file:
        ...     _ = file.write(b"done")
        >>> path.read_text()
        'done'
    """
    path = as_output_file(path, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = _temporary_stem(path)
    if os.name == "posix":  # elsewhere os.kill(pid, 0) is no liveness probe (Ctrl+C on Windows)
        pattern = re.compile(rf"\.{re.escape(stem)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")
        for entry in os.listdir(path.parent):
            if (match := pattern.fullmatch(entry)) and not _alive(int(match[1])):
                (path.parent / entry).unlink(missing_ok=True)
    temporary = path.parent / f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        if not path.is_symlink():
            with contextlib.suppress(OSError):  # none to replace, or a filesystem without modes
                os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_atomic(payload: dict, path: str | os.PathLike, kind: str):
    r"""Writes ``payload`` tagged with ``kind`` to ``path`` through :func:`atomic_file`.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.pt"
        >>> save_atomic({"step": 1}, path, kind="demo")
        >>> load_checked(path, kind="demo")["step"]
        1
    """
    with atomic_file(path) as file:
        torch.save({**payload, "kind": kind}, file)  # the tag given, whatever the payload holds


def load_checked(path: str | os.PathLike, kind: str, map_location=None) -> dict:
    r"""Reads a file written by :func:`save_atomic`, checking that it holds a ``kind`` checkpoint.

    Raises:
        FileNotFoundError: When there is nothing at ``path``.
        ValueError: When ``path`` is a directory, or the file is not a readable checkpoint, or
            one of another kind.
    """
    path = as_file_path(path, "the checkpoint path")
    check_input_file(path, missing=f"no checkpoint at {path}", kind="a checkpoint file")
    unreadable = f"{path} is not a readable checkpoint (corrupt, truncated or not written by igraphflow)"
    try:
        _check_checksums(path)
    except Exception as error:  # any damage: a bad checksum, an "encrypted" flag, an unknown compression, a cut
        raise ValueError(f"{unreadable}: {str(error) or type(error).__name__}") from None
    try:
        with warnings.catch_warnings():  # torch warns of a pickle protocol before it refuses the file
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        # torch's own message runs to several paragraphs; its first sentence says what failed.
        message = str(error).strip() or type(error).__name__
        reason = message.splitlines()[0].split(". ")[0].rstrip(".")
        if isinstance(error, KeyError):  # a byte torch took for a pickle opcode, such as 101
            reason = "unrecognised file format"
        raise ValueError(f"{unreadable}: {reason}") from None
    found = payload.get("kind") if isinstance(payload, dict) else None
    if found != kind:
        raise ValueError(f"{path} holds a checkpoint of {found or 'an unknown kind'!r}, not of {kind!r}")
    return payload


def _check_checksums(path: Path):
    r"""Reads every entry of the zip archive that ``torch.save`` writes, checking its CRC-32:
    ``torch.load`` does not, and a flipped byte in a weight would load as another number. A file
    that is no zip archive (the legacy format) is left to ``torch.load``, as are entries whose
    stored CRC is 0 (``torch.serialization.set_crc32_options(False)`` writes none)."""
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":  # the magic torch itself tells its archives by
            return
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            if entry.CRC == 0:
                continue
            try:
                with archive.open(entry) as contents:
                    while contents.read(1 << 24):
                        pass
            except zipfile.BadZipFile:
                raise zipfile.BadZipFile(f"{entry.filename} fails its checksum") from None


@contextlib.contextmanager
def reading_contents(path: str | os.PathLike, kind: str) -> Iterator[None]:
    r"""Turns any error raised while rebuilding a model from a ``kind`` checkpoint into a ValueError naming the file.

    A file with the right kind tag can still be damaged or written by another version: its
    contents then fail in whatever code reads them (a TypeError for an unknown setting, a
    KeyError for a missing entry), with a message that names neither the file nor the cause.

    Example:
        >>> with reading_contents("model.pt", "demo"):
        ...     int("ten")
        Traceback (most recent call last):
        ...
        ValueError: model.pt does not hold a valid demo checkpoint (...): ValueError: invalid literal for int() ...
    """
    try:
        yield
    except Exception as error:
        # torch lists every mismatched tensor on a line of its own: the first is told, the rest counted.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = " ".join(lines[:2]) + (f" (and {len(lines) - 2} more)" if len(lines) > 2 else "")
        raise ValueError(
            f"{path} does not hold a valid {kind} checkpoint (damaged or written by another version): "
            f"{type(error).__name__}: {reason}"
        ) from error
