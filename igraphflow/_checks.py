r"""Input validation with messages that name the argument and the expected shape."""

from __future__ import annotations

__all__ = [
    "ArrayLike", "MAX_SEED", "as_choice", "as_count", "as_device", "as_flag", "as_orders", "as_output_dir", "as_output_file", "as_real",
    "as_seconds", "as_seed", "as_signals", "as_labels", "check_input_file", "check_node_input", "finite_result",
    "warn_lost_resolution",
]

import math
import numbers
import operator
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Union

import numpy as np
import numpy.typing
import torch
from torch import Tensor

#: The largest seed ``torch.manual_seed`` takes.
MAX_SEED = 2**64 - 1

#: Signals and labels as the public methods take them: a tensor, or anything NumPy reads as an
#: array (arrays, nested lists).
ArrayLike = Union[Tensor, numpy.typing.ArrayLike]


def _as_tensor(value, name: str) -> Tensor:
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        # np.asarray would drop the mask and read the masked placeholders as data.
        raise ValueError(f"{name} is a masked array with {int(np.ma.count_masked(value))} masked values; fill or drop them first")
    if isinstance(value, Tensor):
        tensor = value.to_dense() if value.layout != torch.strided else value
    else:
        try:
            array = np.asarray(value)
            # torch refuses arrays with negative strides (np.flip, [::-1]): copy those.
            tensor = torch.as_tensor(array.copy() if any(step < 0 for step in array.strides) else array)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be a tensor or an array, got {type(value).__name__}: {error}") from None
    # A meta tensor has a shape but no values: every check of its values would fail inside torch.
    if tensor.is_meta:
        raise ValueError(f"{name} is on the meta device, which holds shapes but no values")
    return tensor


def _is_scalar(value) -> bool:
    # Booleans (0-d boolean arrays and tensors too) and strings convert to numbers but are none;
    # a one-element array or tensor converts too, but only 0-d ones are numbers.
    dtype = getattr(value, "dtype", None)
    boolean = dtype == torch.bool or getattr(dtype, "kind", None) == "b"
    return not (boolean or isinstance(value, (bool, np.bool_, str, bytes))) and getattr(value, "ndim", 0) == 0


def as_count(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    r"""Checks a whole number ``>= minimum`` (and ``<= maximum``, if given) and returns it as ``int``.

    Python and NumPy integers (and 0-d integer arrays or tensors) pass, and so do floats with
    an integral value such as ``3.0``; ``2.5``, booleans, strings and ``NaN`` do not.

    Example:
        >>> as_count(np.int64(3), "num_nodes")
        3
        >>> as_count(2.5, "num_nodes")
        Traceback (most recent call last):
        ...
        ValueError: num_nodes must be an integer >= 1, got 2.5
        >>> as_count(True, "num_blocks")  # bool is an Integral, but True is no count
        Traceback (most recent call last):
        ...
        ValueError: num_blocks must be an integer >= 1, got True
    """
    count = None
    if _is_scalar(value):
        try:
            count = operator.index(value)
        except TypeError:
            if isinstance(value, numbers.Real) and float(value).is_integer():
                count = int(value)
    if count is None or count < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and count > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value!r}")
    return count


def as_orders(values, name: str = "orders") -> tuple[int, ...]:
    r"""Checks hop radii: a non-empty sequence of whole numbers ``>= 0``, returned as a tuple of ``int``.

    Example:
        >>> as_orders([0, 1, 2])
        (0, 1, 2)
        >>> as_orders(2)
        Traceback (most recent call last):
        ...
        ValueError: orders must be a non-empty sequence of hop radii (integers >= 0), got 2
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or len(values := list(values)) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of hop radii (integers >= 0), got {values!r}")
    return tuple(as_count(m, name, minimum=0) for m in values)


def as_seed(value, name: str = "seed", maximum: int | None = MAX_SEED) -> int:
    r"""Checks a random seed: an integer in ``[0, maximum]`` (``None``: no upper end).

    ``maximum`` is what the consumer takes: ``torch.manual_seed`` up to ``2**64 - 1``,
    scikit-learn's ``random_state`` up to ``2**32 - 1``, NumPy any size.

    Example:
        >>> as_seed(np.int64(7))
        7
        >>> as_seed(2**32, maximum=2**32 - 1)
        Traceback (most recent call last):
        ...
        ValueError: seed must be an integer <= 4294967295, got 4294967296
    """
    return as_count(value, name, minimum=0, maximum=maximum)


def as_real(value, name: str, interval: str = "(-inf, inf)") -> float:
    r"""Checks a finite real number in ``interval`` and returns it as ``float``.

    The interval is written as in mathematics: ``"(0, 1)"``, ``"[0, 1)"``, ``"(0, inf)"``; a round
    bracket leaves its end out, a square one takes it in. Python and NumPy numbers (and 0-d
    arrays or tensors) pass; booleans, strings, ``NaN`` and infinities do not.

    Example:
        >>> as_real(np.float32(0.25), "p_one", "(0, 1)")
        0.25
        >>> as_real(float("nan"), "noise", "(0, inf)")
        Traceback (most recent call last):
        ...
        ValueError: noise must be a finite number in (0, inf), got nan
    """
    low, high = (float(end) for end in interval[1:-1].split(","))
    number = math.nan
    if _is_scalar(value):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    above = low < number if interval[0] == "(" else low <= number
    below = number < high if interval[-1] == ")" else number <= high
    if not (math.isfinite(number) and above and below):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return number


def as_choice(value, choices: tuple[str, ...], name: str) -> str:
    r"""Checks a setting named by one of ``choices`` and returns that name as a plain ``str``.

    A NumPy string or a ``str`` enum equal to a choice passes, as the choice itself: kept as
    given, it would be saved with the model's settings, and weights-only loading refuses it.

    Example:
        >>> type(as_choice(np.str_("cheb"), ("l3net", "cheb"), "conv"))
        <class 'str'>
        >>> as_choice("gat", ("l3net", "cheb"), "conv")
        Traceback (most recent call last):
        ...
        ValueError: conv must be one of ('l3net', 'cheb'), got 'gat'
    """
    # isinstance first: an array compared with a string gives no single truth value.
    for choice in choices if isinstance(value, str) else ():
        if value == choice:
            return choice
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def as_flag(value, name: str) -> bool:
    r"""Checks a yes/no setting and returns it as ``bool``.

    Python and NumPy booleans (and 0-d boolean arrays or tensors) pass; strings, numbers and
    ``None`` do not, since their truth value is no answer (``"no"`` is truthy).

    Example:
        >>> as_flag(np.bool_(False), "exact")
        False
        >>> as_flag("no", "exact")
        Traceback (most recent call last):
        ...
        ValueError: exact must be True or False, got 'no'
    """
    if isinstance(value, Tensor):
        flag = value.dtype == torch.bool and value.dim() == 0 and not value.is_meta
    elif isinstance(value, (bool, np.bool_, np.ndarray)):
        flag = np.asarray(value).dtype == bool and np.ndim(value) == 0
    else:
        flag = False
    if not flag:
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_seconds(value, name: str = "max_time") -> float:
    r"""Checks a time budget in seconds, ``>= 0``; ``None`` and ``inf`` mean no budget and give ``inf``.

    Example:
        >>> as_seconds(None), as_seconds(np.float32(2.5))
        (inf, 2.5)
        >>> as_seconds(-1)
        Traceback (most recent call last):
        ...
        ValueError: max_time must be a finite number in [0, inf), got -1
    """
    if value is None or (isinstance(value, numbers.Real) and value == math.inf):
        return math.inf
    return as_real(value, name, "[0, inf)")


def as_device(value, name: str = "device") -> torch.device:
    r"""Checks a device that this machine has; ``None`` gives the GPU if there is one, else the CPU.

    Example:
        >>> as_device("cpu")
        device(type='cpu')
        >>> as_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: device must name a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'gpu'
    """
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as error:
        reason = "" if isinstance(value, str) else f" ({error})"  # an int is an accelerator's index
        raise ValueError(f"{name} must name a torch device such as 'cpu', 'cuda' or 'cuda:1', got {value!r}{reason}") from None
    if device.type == "meta":
        raise ValueError(f"{name} 'meta' holds no values, so a model cannot be fitted or used there; give 'cpu' or 'cuda'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name} {str(device)!r} was asked for, but this torch sees no CUDA GPU; give 'cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"{name} {str(device)!r} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    try:  # other backends (mps, xpu, ...) say for themselves whether they are usable
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        reason = str(error).splitlines()[0].split(". ")[0]
        raise ValueError(f"{name} {str(device)!r} cannot be used here: {reason}") from None
    return device


def as_output_dir(path: str | os.PathLike, name: str) -> Path:
    r"""Makes ``path`` a directory to write into (creating it), or says why it cannot be one.

    Checked before long work, so that a wrong path (a file in the way, a folder without write
    access, a system folder) fails at once rather than after a fit.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as file:
        ...     as_output_dir(Path(file.name) / "run", "out")
        Traceback (most recent call last):
        ...
        ValueError: out ... cannot be written: ... is a file, not a directory
    """
    if os.fspath(path) == "":  # Path("") is ".": the files would land wherever the process runs
        raise ValueError(f"{name} is empty: give a directory")
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{name} {path} cannot be written: {folder} is a file, not a directory")
            break
    try:  # permissions alone do not tell (root, read-only or virtual filesystems): try it
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as error:
        raise ValueError(f"{name} {path} cannot be written: {error.strerror or error}") from None
    return path


def as_file_path(path, name: str) -> Path:
    r"""``path`` (a ``str`` or ``os.PathLike``) as a ``Path``; anything else is refused by ``name``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a str or a path, got {type(path).__name__}")
    return Path(path)


def check_input_file(path: Path, *, missing: str, kind: str = "a file", prefix: str = "") -> None:
    r"""Checks that ``path`` is a file to read: a directory there raises ``ValueError``
    (``"{prefix}{path} is a directory, not {kind}"``), nothing there ``FileNotFoundError(missing)``.
    Opening a directory fails with an error that names neither (a permission error on some systems).

    Example:
        >>> check_input_file(Path("."), missing="no data file", kind="a .csv file")
        Traceback (most recent call last):
        ...
        ValueError: . is a directory, not a .csv file
    """
    if path.is_dir():
        raise ValueError(f"{prefix}{path} is a directory, not {kind}")
    if not path.is_file():
        raise FileNotFoundError(missing)


def as_output_file(path: str | os.PathLike, name: str) -> Path:
    r"""Checks that ``path`` can be a file to write: it is not a directory, and its folder is made and
    can be written into (:func:`as_output_dir`).

    Example:
        >>> as_output_file(".", "out")
        Traceback (most recent call last):
        ...
        ValueError: out . is a directory, not a file
    """
    path = as_file_path(path, name)
    if path.is_dir():
        raise ValueError(f"{name} {path} is a directory, not a file")
    as_output_dir(path.parent, name)
    return path


def as_signals(
    X,
    num_nodes: int,
    num_features: int,
    *,
    num_samples: int | None = None,
    name: str = "X",
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Checks graph signals ``[N, V, C]`` (finite numbers) and returns them as ``dtype`` on ``device``.

    With ``num_samples``, ``N`` must equal it (e.g. the number of rows of the labels).

    Example:
        >>> as_signals([[[0.0], [1.0]]], num_nodes=2, num_features=1).shape
        torch.Size([1, 2, 1])
        >>> as_signals([[[0.0], [1.0]]], num_nodes=2, num_features=1, num_samples=3)
        Traceback (most recent call last):
        ...
        ValueError: X must have shape [N=3, num_nodes=2, num_features=1], got [1, 2, 1]
    """
    X = _as_tensor(X, name)
    wrong_rows = num_samples is not None and X.dim() == 3 and X.size(0) != num_samples
    if X.dim() != 3 or X.shape[1:] != (num_nodes, num_features) or wrong_rows:
        rows = "N" if num_samples is None else f"N={num_samples}"
        raise ValueError(
            f"{name} must have shape [{rows}, num_nodes={num_nodes}, num_features={num_features}], got {list(X.shape)}"
        )
    if X.dtype.is_complex or X.dtype == torch.bool:  # integers of any width are readings (counts, pixels)
        raise ValueError(f"{name} must hold real numbers (floats or integers), got dtype {X.dtype}")
    # Detached: signals are data, and a graph of their own would be walked twice by training.
    given, X = X, X.detach().to(device=device, dtype=dtype)
    bad = ~torch.isfinite(X)  # after the cast, so that values too large for ``dtype`` are caught
    if bad.any():
        # Only on failure: which of them were finite as given, but too large for ``dtype``.
        infinite = ~torch.isfinite(given.to(X.device))
        reason, bad = ("NaN or infinite values", infinite) if infinite.any() else (f"values too large for {dtype}", bad)
        first = bad.nonzero()[0].tolist()
        raise ValueError(f"{name} holds {int(bad.sum())} {reason} (first at index {first})")
    return X


def warn_lost_resolution(X, dtype: torch.dtype, name: str = "X", stacklevel: int = 3):
    r"""Warns where casting the signals ``X [N, V, C]`` to ``dtype`` rounds a node feature to
    fewer than 100 steps per standard deviation: a large offset with a small spread, which
    float64 holds and float32 does not (1e6 + 0.01 z keeps two distinct values), or values
    below the smallest normal number of ``dtype`` (1e-44 z in float32 keeps a few dozen, 1e-50 z
    none). The model would see that feature as nearly constant. ``X`` that comes in a floating
    dtype as coarse as ``dtype`` or coarser was rounded before: that is said too. Integers are
    spaced 1 apart already: only a cast that rounds them is warned about (counts near 1e8 keep
    spacing 8 in float32; below 2^24 it holds every integer).

    Example:
        >>> import warnings
        >>> X = 1e6 + 0.01 * torch.randn(100, 2, 1, dtype=torch.float64)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_lost_resolution(X, torch.float32)
        >>> "fewer than 100 steps" in str(caught[0].message)
        True
    """
    X = _as_tensor(X, name)
    if X.size(0) < 2:
        return
    given_floats = X.is_floating_point()
    rounded_before = given_floats and torch.finfo(X.dtype).eps >= torch.finfo(dtype).eps
    finfo = torch.finfo(X.dtype if rounded_before else dtype)
    X = X.detach().double()
    spread, size = X.std(0), X.abs().amax(0)
    # The spacing at the largest value: relative for normal numbers, the fixed spacing of the
    # subnormal ones (finfo.tiny * finfo.eps) below them.
    step = torch.clamp_min(finfo.eps * size, finfo.tiny * finfo.eps)
    coarse = (spread > 0) & (100 * step > spread)
    if not given_floats:
        coarse &= size > 2 / finfo.eps  # the first integer the dtype cannot hold
    if coarse.any():
        node, feature = coarse.nonzero()[0].tolist()
        tiny = size[node, feature] < finfo.tiny / finfo.eps
        where = (f"{int(coarse.sum())} node features (first: node {node}, feature {feature}, values up to "
                 f"{size[node, feature].item():.6g} varying by {spread[node, feature].item():.3g})")
        if rounded_before:
            message = (f"{name} comes in {finfo.dtype}, which already holds fewer than 100 steps per standard deviation "
                       f"of {where}: the model sees them rounded; {'rescale' if tiny else 'subtract the offset from'} "
                       "the data in float64 before the cast")
        else:
            message = (f"{name} in {finfo.dtype} keeps fewer than 100 steps per standard deviation of {where}: the model "
                       f"sees them rounded; fit it in float64 (model.double(), or igraphflow train --float64) or "
                       f"{'rescale X' if tiny else 'subtract the offset from X'} first")
        warnings.warn(message, stacklevel=stacklevel)


def as_labels(Y, num_nodes: int, num_classes: int | None, *, num_samples: int | None = None, name: str = "Y", device=None) -> Tensor:
    r"""Checks node labels ``[N, V]`` with values in ``0..K-1`` and returns them as ``int64``.

    With ``num_classes=None`` (``K`` yet to be read off the labels), only ``Y >= 0`` is checked.
    Booleans read as the labels 0 and 1.

    Example:
        >>> as_labels([[0, 2]], num_nodes=2, num_classes=3)
        tensor([[0, 2]])
    """
    Y = _as_tensor(Y, name)
    if Y.dim() != 2 or Y.size(1) != num_nodes or (num_samples is not None and Y.size(0) != num_samples):
        rows = "N" if num_samples is None else f"N={num_samples}"
        raise ValueError(f"{name} must have shape [{rows}, num_nodes={num_nodes}], got {list(Y.shape)}")
    if Y.dtype.is_floating_point:
        if not torch.isfinite(Y).all() or (Y != Y.round()).any():
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    elif Y.dtype.is_complex:
        raise ValueError(f"{name} must hold integer class labels, got dtype {Y.dtype}")
    if Y.dtype in (torch.uint64, torch.uint32) or Y.dtype.is_floating_point:
        # Values beyond int64 would wrap round in the cast below: compare them as they are.
        wide = Y.double()
        if Y.numel() and (wide.min() < -(2**62) or wide.max() >= 2**62):
            classes = "0..K-1" if num_classes is None else f"[0, num_classes={num_classes})"
            raise ValueError(f"{name} holds labels in [{wide.min().item():g}, {wide.max().item():g}], outside {classes}")
    Y = Y.long()
    if num_classes is None:
        if Y.numel() and Y.min() < 0:
            raise ValueError(f"{name} holds negative labels (the smallest is {int(Y.min())}); labels are 0..K-1")
    elif Y.numel() and (Y.min() < 0 or Y.max() >= num_classes):
        raise ValueError(
            f"{name} holds labels in [{int(Y.min())}, {int(Y.max())}], outside [0, num_classes={num_classes})"
        )
    return Y.to(device)


def check_node_input(x: Tensor, num_nodes: int, channels: int | None, layer: str):
    r"""Checks that a layer's input is ``[*, num_nodes, channels]`` (any number of channels if ``None``).

    A layer bound to a graph would otherwise treat extra nodes as isolated ones.

    Example:
        >>> check_node_input(torch.zeros(4, 3, 2), 3, 2, "L3NetConv")
        >>> check_node_input(torch.zeros(4, 5, 2), 3, None, "HopMeans")
        Traceback (most recent call last):
        ...
        ValueError: HopMeans expects input [*, num_nodes=3, C], got [4, 5, 2]
    """
    if x.dim() < 2 or x.size(-2) != num_nodes or (channels is not None and x.size(-1) != channels):
        last = "C" if channels is None else f"in_channels={channels}"
        raise ValueError(f"{layer} expects input [*, num_nodes={num_nodes}, {last}], got {list(x.shape)}")


def finite_result(result: Tensor, inputs: Tensor, name: str, warn: bool = False) -> Tensor:
    r"""``result`` (one row per sample of ``inputs``), or a ValueError naming the samples it is
    not finite for: finite inputs far outside those the flow was trained on can overflow its
    arithmetic, and NaN would pass silently through every answer built on it. With ``warn``, a
    warning instead, and ``result`` as computed (the model's own draws: a sample whose rows are
    scored one by one keeps its finite rows)."""
    bad = ~torch.isfinite(result.flatten(1)).all(1)
    if bad.any():
        rows = bad.nonzero().flatten()
        largest = inputs[rows].abs().max().item()
        message = (
            f"the flow overflows on {rows.numel()} of {bad.numel()} samples of {name} (first: {rows[:5].tolist()}; "
            f"largest |{name}| among them: {largest:.3g}): values this far from those the flow was trained on exceed "
            f"{str(result.dtype).removeprefix('torch.')}"
        )
        if not warn:
            raise ValueError(message)
        warnings.warn(f"{message}; returned as computed", stacklevel=3)
    return result
