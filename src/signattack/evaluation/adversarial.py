"""The adversarial examples of an evaluation, exported and verified.

RobustBench's external evaluations ask for the adversarial examples as one array of the test set's
size, and re-evaluating a saved ``x_adv`` is where a number is found not to reproduce (the model's
mode, randomness). [`evaluate`][signattack.evaluation.evaluate] with ``adversarial=`` writes, per
radius, the point that decided each sample (the adversarial point where an attack broke it, at that
radius or a smaller one; the clean input where none did) with the clean inputs, the labels and the
report; [`verify`][signattack.evaluation.verify] evaluates the model there again and says whether it
gives the report's numbers, and whether every point lies in its ball and the box.

The file is a NumPy ``.npz`` (any framework), or a ``.pt`` dictionary of tensors for ``torch.load``:
``x`` (clean inputs), ``y`` (labels), ``eps`` (the radii), ``x_adv_<i>`` (the points at radius
``eps[i]``, in the inputs' dtype), ``report`` (the report's JSON), ``dtype`` (the inputs' dtype as
their library names it), ``library`` (``torch``, ``jax`` or ``numpy``), ``norm`` (``linf`` or
``l2``: the ball the points were held to, which [`verify`][signattack.evaluation.verify] checks; a
file without it, written before the L2 threat model, is L-inf) and ``record`` (JSON: how to rebuild
the evaluation. From Python what is knowable: the model's class and digest, the box, the norm, the
radii, the data's digest; from the command line also its flags, which ``signattack verify FILE``
rebuilds the model from. On synthetic stand-in data it says so. A file written before it has none).
NumPy has no ``bfloat16``: a ``.npz`` keeps ``bfloat16`` points as the ``float32`` numbers they are
(exactly), and ``dtype`` says ``bfloat16``, so that [`verify`][signattack.evaluation.verify]
re-evaluates them in ``bfloat16``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from signattack._host import (
    HostArray,
    dtype_name,
    library_of,
    npz_bytes,
    read_npz,
    read_tensors,
    stored_array,
    stored_text,
    to_numpy,
    to_values,
)
from signattack._io import Json, escaped, parse, write_atomically
from signattack.core.norms import NormName, norm_of
from signattack.evaluation.report import RobustnessReport, stand_in_note

if TYPE_CHECKING:
    from signattack.evaluation.identity import Identity

__all__ = ["Adversarial", "load_adversarial"]

_SUFFIXES = (".npz", ".pt")
_PART = re.compile(r"\.?[0-9]+\.npz(\..*)?")


def check_path(path: object) -> Path:
    """``path`` as a file to write the adversarial examples to, checked before any work.

    Raises:
        TypeError: It is not a path (``str`` or ``os.PathLike``).
        ValueError: It does not end in ``.npz`` or ``.pt``, names a folder, or cannot be
            written (a part of it is a file, or its folder is not writable).
    """
    chosen = _path_argument(path, "adversarial")
    if chosen.suffix not in _SUFFIXES:
        raise ValueError(
            f"adversarial must be a .npz or .pt file, got {str(chosen)!r}: .npz for any "
            "framework, .pt for torch.load"
        )
    if chosen.is_dir():
        raise ValueError(f"adversarial must be a file, got the folder {str(chosen)!r}")
    if chosen.exists() and not chosen.is_file():
        raise ValueError(f"adversarial must be a regular file, got {str(chosen)!r}")
    parts = parts_of(chosen)
    if parts.exists() and not parts.is_dir():
        raise ValueError(
            f"adversarial {str(chosen)!r} cannot be written: {str(parts)!r}, where its "
            "batches are kept, is not a folder"
        )
    folder = chosen.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"adversarial {str(chosen)!r} cannot be written: {str(folder)!r} is not a "
            "writable folder"
        )
    return chosen


def _path_argument(path: object, name: str) -> Path:
    """``path`` as a ``Path``, if it is a ``str`` or ``os.PathLike`` of text."""
    if isinstance(path, (str, os.PathLike)):
        with contextlib.suppress(TypeError):  # a PathLike of bytes
            return Path(path)
    raise TypeError(f"{name} must be a str or os.PathLike path, got {type(path).__name__} {path!r}")


def parts_of(path: Path) -> Path:
    """The folder beside the export where a checkpointed run keeps each batch's points."""
    return Path(f"{path}.parts")


def _remove_parts(parts: Path) -> None:
    """Remove the per-batch files kept in ``parts``, and the folder once empty; files that
    are not this module's stay."""
    if not parts.is_dir():
        return
    for entry in parts.iterdir():
        if _PART.fullmatch(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else lives there: leave it
        parts.rmdir()


class Collected:
    """The points of every batch at every radius, in order, kept on the host, with the
    inputs' dtype and library."""

    def __init__(self, radii: int) -> None:
        self.clean: list[HostArray] = []
        self.labels: list[HostArray] = []
        self.points: list[list[HostArray]] = [[] for _ in range(radii)]
        self.dtype = ""
        self.library = "numpy"

    def add(self, x: object, y: object, points: list[HostArray]) -> None:
        """Keep a batch: its inputs and labels (arrays of any library, as the data gave
        them) and its points at every radius (host arrays, as `to_numpy` gives).

        Raises:
            ValueError: The points are not one array of the inputs' shape per radius.
        """
        clean = to_numpy(x)
        if len(points) != len(self.points) or any(p.shape != clean.shape for p in points):
            raise ValueError(
                f"the adversarial points of a batch must be {len(self.points)} arrays of the "
                f"inputs' shape {clean.shape}, got {[p.shape for p in points]}"
            )
        if not self.clean:
            self.dtype, self.library = dtype_name(x), library_of(x)
        self.clean.append(clean)
        self.labels.append(to_numpy(y))
        for kept, batch in zip(self.points, points, strict=True):
            kept.append(batch)

    def save(self, path: Path, report: RobustnessReport) -> Path:
        """Write everything to ``path`` atomically, then remove the batches kept beside it."""
        x = np.concatenate(self.clean)
        points = [np.concatenate(points) for points in self.points]
        dtype = self.dtype or dtype_name(x)
        write_export(path, x, np.concatenate(self.labels), points, report, dtype, self.library)
        _remove_parts(parts_of(path))
        return path


def export_record(report: RobustnessReport, command: Mapping[str, Json] | None = None) -> str:
    """The export's ``record``, as JSON: what the report knows of the evaluation (the
    model's class and digest, the box, the norm, the radii, the data), whether the data is
    synthetic stand-in data, and the ``command`` that rebuilds it, where one made it."""
    record: dict[str, Json] = {
        "made_by": "python" if command is None else "command line",
        "model": report.metadata.get("model"),
        "bounds": None if report.bounds is None else list(report.bounds),
        "norm": report.norm.name,
        "eps": list(report.eps),
        "data": report.metadata.get("data"),
    }
    stand_in = stand_in_note(report.metadata)
    if stand_in is not None:
        record = {"synthetic_data": True, "warning": stand_in, **record}
    if command is not None:
        record["command"] = dict(command)
    return json.dumps(record, allow_nan=False)


def write_export(
    path: Path,
    x: HostArray,
    y: HostArray,
    points: list[HostArray],
    report: RobustnessReport,
    dtype: str,
    library: str,
    command: Mapping[str, Json] | None = None,
) -> None:
    """Write an export to ``path`` atomically: the arrays, the report and its record."""
    arrays: dict[str, HostArray] = {"x": x, "y": y, "eps": np.asarray(report.eps, np.float64)}
    arrays.update({f"x_adv_{index}": kept for index, kept in enumerate(points)})
    texts = {
        "report": report.to_json(),
        "dtype": dtype,
        "library": library,
        "norm": report.norm.name,
        "record": export_record(report, command),
    }
    if path.suffix == ".pt":
        import torch

        tensors: dict[str, object] = {k: torch.from_numpy(v) for k, v in arrays.items()}
        if dtype == "bfloat16":  # torch has it: the file holds what the model took
            for key in ("x", *(f"x_adv_{i}" for i in range(len(points)))):
                tensors[key] = torch.from_numpy(arrays[key]).to(torch.bfloat16)
        tensors.update(texts)
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        data = buffer.getvalue()
    else:
        named = {key: np.asarray(text) for key, text in texts.items()}
        data = npz_bytes({**arrays, **named}, compressed=True)
    write_atomically(path, data)


def add_command(path: Path, report: RobustnessReport, command: Mapping[str, Json]) -> None:
    """Write the export at ``path`` again with the ``command`` that rebuilds its evaluation
    in its record, and ``report`` (the evaluation's, with what the command line adds to its
    metadata) in place of its own.

    Raises:
        ValueError: The file is not an export, or ``report`` is not of its samples and radii.
    """
    saved = load_adversarial(path)
    if report.eps != saved.report.eps or report.samples != saved.report.samples:
        raise ValueError(f"the report is not the one of the export {str(path)!r}")
    points = list(saved.points.values())
    write_export(path, saved.x, saved.y, points, report, saved.dtype, saved.library, command)


@dataclass(frozen=True)
class Adversarial:
    """A file of adversarial examples, read.

    Attributes:
        x: The clean inputs.
        y: The labels.
        points: Per radius, the points that decided each sample.
        report: The report of the evaluation that wrote them.
        dtype: The inputs' dtype as their library names it (``bfloat16`` inputs are held
            as the ``float32`` numbers they are).
        library: The inputs' library: ``torch``, ``jax`` or ``numpy``.
        norm: The norm of the balls the points were held to: ``"linf"`` (also for a file
            that records none) or ``"l2"``.
        record: How to rebuild the evaluation (see the module's description); ``None`` for
            a file written before exports recorded it.
    """

    x: HostArray
    y: HostArray
    points: dict[float, HostArray]
    report: RobustnessReport
    dtype: str = ""
    library: str = "numpy"
    norm: NormName = "linf"
    record: Mapping[str, Json] | None = None


def load_adversarial(path: str | os.PathLike[str]) -> Adversarial:
    """The adversarial examples that an evaluation wrote to ``path``.

    A ``.pt`` file is read with ``torch.load(..., weights_only=True)``: it may hold tensors
    and strings, never code.

    Raises:
        TypeError: ``path`` is not a path.
        ValueError: The file is missing, is not such a file (empty, truncated, foreign, a
            pickle of objects), or its parts are missing, of the wrong kind or disagree;
            the message names the file and what is wrong.
    """
    source = _path_argument(path, "path")
    if not source.exists():
        raise ValueError(
            f"adversarial {str(source)!r} does not exist: it must be a file written by evaluate"
        )
    if not source.is_file():
        raise ValueError(f"adversarial {str(source)!r} must be a file written by evaluate")
    try:
        stored = read_tensors(source) if source.suffix == ".pt" else read_npz(source)
    except Exception as error:  # what np.load and torch.load raise varies by damage
        raise ValueError(
            f"adversarial {str(source)!r} is not a file of adversarial examples written by "
            f"evaluate: it cannot be read ({_reason(error, source)})"
        ) from None
    missing = [key for key in ("x", "y", "eps", "report") if key not in stored]
    if missing:
        raise ValueError(
            f"adversarial {str(source)!r} is not a file of adversarial examples written by "
            f"evaluate: it holds no {missing[0]!r}"
        )
    try:
        return _checked(stored)
    except ValueError as error:
        raise ValueError(f"adversarial {str(source)!r} is damaged: {error}") from None


def _reason(error: Exception, source: Path) -> str:
    """Why a file could not be read, in one line of our own words: never the reader's advice
    (``torch.load`` suggests ``weights_only=False``, which would run a pickle's code), and
    what the file is where it is no npz archive (NumPy reads any other file as a pickle)."""
    if source.suffix == ".pt":
        return (
            f"{type(error).__name__}: it holds something other than tensors and strings, or is "
            "damaged; it is loaded with weights_only=True, so no code in it is ever run"
        )
    kind = _not_npz(source)
    if kind is not None:
        return kind
    if isinstance(error, ValueError) and "pickle" in str(error):
        return "it holds pickled objects, which are never loaded"
    first = str(error).splitlines()[0] if str(error) else ""
    return escaped(f"{type(error).__name__}: {first}", "text")[:200]


def _not_npz(source: Path) -> str | None:
    """What ``source`` is where its first bytes are no zip archive's (an ``.npz`` is one)."""
    try:
        with source.open("rb") as handle:
            start = handle.read(16)
    except OSError:
        return None
    if start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    kinds = {b"\x93NUMPY": "a single NumPy array (.npy)", b"\x80": "a pickle (never loaded)"}
    said = next((kind for magic, kind in kinds.items() if start.startswith(magic)), None)
    what = said or ("empty" if not start else f"something else, starting {start!r}")
    return f"it is {what}, not an npz archive (a zip archive)"


def _checked(stored: Mapping[str, HostArray | str]) -> Adversarial:
    """The export's arrays and texts, checked against each other."""
    text = stored_text(stored, "report")
    try:
        report = RobustnessReport.from_dict(parse(text))
    except Exception as error:  # from_dict checks every entry, each in its own words
        raise ValueError(f"its report cannot be read ({str(error)[:200]})") from None
    x, y, eps = (
        stored_array(stored, "x", "iuf"),
        stored_array(stored, "y", "iu"),
        stored_array(stored, "eps", "f"),
    )
    if eps.ndim != 1:
        raise ValueError(f"its radii must be one list, got an array of shape {eps.shape}")
    radii = tuple(float(e) for e in to_values(eps))
    if radii != report.eps:
        raise ValueError(f"its radii {list(radii)} are not the report's {list(report.eps)}")
    if y.shape != (report.samples,) or len(x) != report.samples:
        raise ValueError(
            f"not one input and one label per sample of the report ({report.samples}): "
            f"x {x.shape}, y {y.shape}"
        )
    points = {e: stored_array(stored, f"x_adv_{i}", "iuf") for i, e in enumerate(radii)}
    if any(p.shape != x.shape or p.dtype != x.dtype for p in points.values()):
        raise ValueError(
            f"its points are not all of the inputs' shape {x.shape} and dtype {x.dtype}"
        )
    for name, values in (("x", x), *((f"x_adv_{i}", p) for i, p in enumerate(points.values()))):
        if values.dtype.kind == "f" and not bool(np.isfinite(values).all()):
            raise ValueError(f"its {name} holds NaN or inf")
    dtype = stored_text(stored, "dtype", dtype_name(x))
    held = "float32" if dtype == "bfloat16" else dtype
    if held != dtype_name(x):
        raise ValueError(f"it says the inputs are {dtype!r}, but holds {x.dtype}")
    if dtype == "bfloat16" and not all(_in_bfloat16(a) for a in (x, *points.values())):
        raise ValueError("it says the inputs are 'bfloat16', but holds float32 values beyond it")
    library = stored_text(stored, "library", "numpy")
    if library not in ("torch", "jax", "numpy"):
        raise ValueError(f"library must be 'torch', 'jax' or 'numpy', got {library[:40]!r}")
    norm = _norm(stored, report)
    return Adversarial(x, y, points, report, dtype, library, norm, _record(stored))


def _record(stored: Mapping[str, HostArray | str]) -> dict[str, Json] | None:
    """The record of how to rebuild the evaluation, where the file holds one."""
    if "record" not in stored:
        return None
    try:
        record = parse(stored_text(stored, "record"))
    except ValueError:  # a JSON error is a ValueError too
        record = None
    if not isinstance(record, dict):
        raise ValueError("its record is not a JSON object")
    return record


def _norm(stored: Mapping[str, HostArray | str], report: RobustnessReport) -> NormName:
    """The norm the file records, which its report must record too (a file and a report
    that record none are L-inf)."""
    named = stored_text(stored, "norm", report.norm.name)
    try:
        norm = norm_of(named).name
    except ValueError:
        raise ValueError(f"norm must be 'linf' or 'l2', got {named[:40]!r}") from None
    if named != norm or norm != report.norm.name:
        raise ValueError(
            f"it says the points were held to the {named[:40]!r} ball, its report says "
            f"{report.norm.name!r}"
        )
    return norm


def _in_bfloat16(values: HostArray) -> bool:
    """Whether float32 ``values`` are all bfloat16 values (the low 16 bits of each zero)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return not bool(np.any(bits & np.uint32(0xFFFF)))


def evaluation_digest(identity: Identity | None) -> str:
    """A digest of what an evaluation is (model, attacks, radii, version), binding the
    batches kept beside an export to the run that wrote them; ``""`` without one."""
    if identity is None:
        return ""
    text = json.dumps(identity.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def store_points(
    parts: Path,
    index: int,
    digest: str,
    points: list[HostArray],
    identity: Identity | None = None,
) -> None:
    """Keep one batch's points beside the export, for a resumed run, bound to the batch's
    data (``digest``) and to the evaluation (``identity``, as the checkpoint is)."""
    arrays = {f"point_{i}": point for i, point in enumerate(points)}
    bound = {"digest": np.asarray(digest), "evaluation": np.asarray(evaluation_digest(identity))}
    write_atomically(parts / f"{index}.npz", npz_bytes({**arrays, **bound}))


def stored_points(
    parts: Path | None, index: int, digest: str, identity: Identity | None = None
) -> list[HostArray] | None:
    """The points a checkpointed batch kept; ``None`` where nothing is exported or no
    points were kept for it (a checkpoint of a run without ``adversarial=``, or whose
    export finished and removed its parts): the caller attacks that batch again.

    Raises:
        ValueError: The points kept for it belong to another evaluation (another model,
            attack or radii) or other data, or their file is damaged.
    """
    if parts is None:
        return None
    part = parts / f"{index}.npz"
    if not part.exists() and not part.is_symlink():
        return None
    problem = "are not there"
    try:
        stored = read_npz(part)
        if str(stored.pop("digest")) != digest:
            problem = "there were made on other data"
        elif str(stored.pop("evaluation", "")) != evaluation_digest(identity):
            problem = "there belong to another evaluation (model, attacks or radii)"
        else:
            return [stored[f"point_{i}"] for i in range(len(stored))]
    except Exception:  # missing, truncated or foreign: what np.load raises varies
        problem = "are not there or are damaged"
    raise ValueError(
        f"batch {index} finished in an earlier run whose adversarial examples in {parts} "
        f"cannot be used (the points {problem}): delete {parts} to attack the finished "
        "batches again, resume without adversarial=, or start afresh with a new checkpoint"
    )
