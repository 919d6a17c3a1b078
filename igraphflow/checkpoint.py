r"""Atomic checkpoint files: a payload of tensors and plain settings, tagged with its kind."""

from __future__ import annotations

__all__ = ["save_atomic", "load_checked", "reading_contents"]

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from ._checks import as_output_file


def save_atomic(payload: dict, path: str | os.PathLike, kind: str):
    r"""Writes ``payload`` to ``path`` so that a reader sees either the old file or the new one.

    The file is written beside its destination, flushed to disk, then renamed over it.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.pt"
        >>> save_atomic({"step": 1}, path, kind="demo")
        >>> load_checked(path, kind="demo")["step"]
        1
    """
    path = as_output_file(path, "checkpoint path")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({"kind": kind, **payload}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checked(path: str | os.PathLike, kind: str, map_location=None) -> dict:
    r"""Reads a file written by :func:`save_atomic`, checking that it holds a ``kind`` checkpoint.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: When the file is not a readable checkpoint, or one of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        # torch's own message runs to several paragraphs; its first sentence says what failed.
        message = str(error).strip() or type(error).__name__
        reason = message.splitlines()[0].split(". ")[0].rstrip(".")
        raise ValueError(f"{path} is not a readable checkpoint (corrupt, truncated or not written by igraphflow): {reason}") from None
    found = payload.get("kind") if isinstance(payload, dict) else None
    if found != kind:
        raise ValueError(f"{path} holds a checkpoint of {found or 'an unknown kind'!r}, not of {kind!r}")
    return payload


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
        raise ValueError(
            f"{path} does not hold a valid {kind} checkpoint (damaged or written by another version): "
            f"{type(error).__name__}: {error}"
        ) from error
