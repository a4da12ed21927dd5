"""Robustness evaluation at scale: accuracy against eps over whole datasets.

:func:`evaluate` attacks every batch of a dataset at every eps and returns a
:class:`RobustnessReport`. It wastes no work: eps values are visited in increasing order, and
a sample that is already misclassified (clean, or at a smaller eps) counts as broken at every
larger eps without being attacked again, since the smaller ball lies inside the larger one.
With a checkpoint path it saves its progress atomically after every batch, and an
interrupted run resumes where it stopped and ends with exactly the results of an
uninterrupted one. Under ``torchrun`` each process evaluates its share of the batches and
the results are combined with ``torch.distributed``; the report equals the single-process
one.

:func:`smallest_breaking_eps` finds, per sample, the smallest eps at which the attack
succeeds, by bisection: a whole robustness curve from one run.

Works with any backend; torch is imported only where it is already in use.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, to_device

from signattack._files import write_atomically
from signattack._typing import Array
from signattack.attacks import FGSM, Attack, IteratedSign
from signattack.backends import open_backend
from signattack.core.losses import CROSS_ENTROPY
from signattack.core.validation import check_real

__all__ = [
    "RobustnessReport",
    "evaluate",
    "smallest_breaking_eps",
]

AttackSpec = IteratedSign | FGSM | Callable[[float], Attack]
"""An attack to run at every eps: an :class:`IteratedSign` or :class:`FGSM` whose ``eps`` is
replaced, or a factory ``eps -> attack``."""

_FORMAT = 1


def _attack_at(spec: AttackSpec, eps: float) -> Attack:
    if isinstance(spec, (IteratedSign, FGSM)):
        return dataclasses.replace(spec, eps=eps)
    return spec(eps)


def _check_eps_list(eps: Sequence[float]) -> tuple[float, ...]:
    if isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a sequence of radii, got the single number {eps!r}")
    values = tuple(check_real("eps", value) for value in eps)
    if not values:
        raise ValueError("eps must hold at least one radius, got an empty sequence")
    if len(set(values)) != len(values):
        raise ValueError(f"eps must not repeat a radius, got {list(eps)!r}")
    return tuple(sorted(values))


def _to_numpy(array: Array) -> np.ndarray[Any, Any]:
    return np.asarray(to_device(array, "cpu"))


def _distributed() -> Any | None:
    """``torch.distributed`` when a process group is running, else ``None``."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


@dataclass(frozen=True)
class RobustnessReport:
    """Clean and robust accuracy of a model over a dataset, per sample and in total.

    Attributes:
        eps: The radii, increasing.
        attack: A description of the attack.
        clean_correct: Per sample: classified correctly without attack.
        robust_correct: Per eps, per sample: still classified correctly under the attack.
        max_perturbation: Per eps, the largest ``|x_adv - x|_inf`` the attack actually
            produced; above eps would mean a broken threat model.
        attacked: Per eps, how many samples were attacked (the others were already broken).
    """

    eps: tuple[float, ...]
    attack: str
    clean_correct: tuple[bool, ...]
    robust_correct: dict[float, tuple[bool, ...]]
    max_perturbation: dict[float, float]
    attacked: dict[float, int]

    @property
    def samples(self) -> int:
        """Number of samples evaluated."""
        return len(self.clean_correct)

    @property
    def clean_accuracy(self) -> float:
        """Share of samples classified correctly without attack."""
        return sum(self.clean_correct) / self.samples

    @property
    def robust_accuracy(self) -> dict[float, float]:
        """Per eps, the share of samples classified correctly under the attack."""
        return {e: sum(correct) / self.samples for e, correct in self.robust_correct.items()}

    def table(self) -> str:
        """Accuracy against eps as aligned text."""
        lines = [f"{'eps':>8}  {'accuracy':>8}  {'max |d|':>8}  {'attacked':>8}"]
        lines.append(f"{'clean':>8}  {self.clean_accuracy:>8.2%}  {'':>8}  {'':>8}")
        for eps in self.eps:
            lines.append(
                f"{eps:>8g}  {self.robust_accuracy[eps]:>8.2%}  "
                f"{self.max_perturbation[eps]:>8.4g}  {self.attacked[eps]:>8}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (eps keys as strings)."""
        return {
            "format": _FORMAT,
            "attack": self.attack,
            "samples": self.samples,
            "eps": list(self.eps),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": {str(e): a for e, a in self.robust_accuracy.items()},
            "max_perturbation": {str(e): m for e, m in self.max_perturbation.items()},
            "attacked": {str(e): n for e, n in self.attacked.items()},
            "clean_correct": list(self.clean_correct),
            "robust_correct": {str(e): list(c) for e, c in self.robust_correct.items()},
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON document."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        """One row per sample: index, clean correctness, correctness at each eps."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["sample", "clean", *[f"eps={e:g}" for e in self.eps]])
        for index, clean in enumerate(self.clean_correct):
            writer.writerow(
                [index, int(clean), *[int(self.robust_correct[e][index]) for e in self.eps]]
            )
        return buffer.getvalue()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        """The report that :meth:`to_dict` wrote."""
        eps = tuple(float(e) for e in data["eps"])
        return cls(
            eps=eps,
            attack=data["attack"],
            clean_correct=tuple(bool(c) for c in data["clean_correct"]),
            robust_correct={e: tuple(data["robust_correct"][str(e)]) for e in eps},
            max_perturbation={e: float(data["max_perturbation"][str(e)]) for e in eps},
            attacked={e: int(data["attacked"][str(e)]) for e in eps},
        )

    def save(self, path: str | Path) -> Path:
        """Write the report as ``.json`` or ``.csv`` (by suffix), atomically: an existing file
        is replaced only by a complete report."""
        path = Path(path)
        text = self.to_csv() if path.suffix == ".csv" else self.to_json()
        write_atomically(path, text.encode())
        return path

    def plot(self, path: str | Path | None = None) -> Any:
        """Accuracy against eps (needs matplotlib); returns the figure, saved to ``path``."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        radii = [0.0, *self.eps]
        accuracy = [self.clean_accuracy, *[self.robust_accuracy[e] for e in self.eps]]
        ax.plot(radii, accuracy, marker="o", lw=2)
        ax.set_xlabel("eps (input units)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(self.attack)
        ax.grid(alpha=0.3)
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


@dataclass
class _Progress:
    """What is finished: per batch index, its per-sample results."""

    fingerprint: str
    batches: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, fingerprint: str) -> _Progress:
        if path is None or not path.exists():
            return cls(fingerprint)
        data = json.loads(path.read_text())
        if data.get("fingerprint") != fingerprint:
            raise ValueError(
                f"checkpoint {path} belongs to another evaluation (the attack or the eps "
                "differ); delete it or pass another checkpoint path"
            )
        return cls(fingerprint, {int(k): v for k, v in data["batches"].items()})

    def save(self, path: Path | None) -> None:
        if path is not None:
            progress = {"fingerprint": self.fingerprint, "batches": self.batches}
            write_atomically(path, json.dumps(progress).encode())


def _fingerprint(attack: AttackSpec, eps: tuple[float, ...]) -> str:
    """Identifies an evaluation across processes: no memory addresses, unlike ``repr``."""
    text = json.dumps({"attack": _describe(attack), "eps": eps, "format": _FORMAT})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _batch_rng(attack: AttackSpec, batch_index: int, eps_index: int) -> np.random.Generator | None:
    """A generator per batch and eps, so that a resumed or sharded run draws what an
    uninterrupted single-process run draws."""
    seed = attack.seed if isinstance(attack, IteratedSign) else None
    return None if seed is None else np.random.default_rng([seed, batch_index, eps_index])


def _predict(model: object, x: Array) -> Array:
    """Predicted classes through the same backend the attacks use, in eval mode."""
    with open_backend(model, x, CROSS_ENTROPY, "eval") as backend:
        xp = array_namespace(x)
        return xp.argmax(backend.logits(backend.prepare(x)), axis=1)


def _evaluate_batch(
    model: object,
    x: Array,
    y: Array,
    attack: AttackSpec,
    eps: tuple[float, ...],
    batch_index: int,
) -> dict[str, Any]:
    xp = array_namespace(x)
    where = device(x)
    y = to_device(y, where)
    clean = _to_numpy(_predict(model, x) == y).astype(bool)
    correct = clean.copy()
    result: dict[str, Any] = {"clean": clean.tolist(), "robust": [], "max": [], "attacked": []}
    for eps_index, radius in enumerate(eps):
        still = np.flatnonzero(correct)
        largest = 0.0
        if still.size:
            index = xp.asarray(still, device=where)
            x_part, y_part = x[index], y[index]
            attack_now = _attack_at(attack, radius)
            rng = _batch_rng(attack, batch_index, eps_index)
            # run() predicts at the adversarial batch with its final forward pass.
            if isinstance(attack_now, IteratedSign):
                outcome = attack_now.run(model, x_part, y_part, rng=rng)  # type: ignore[arg-type]
            else:
                outcome = attack_now.run(model, x_part, y_part)  # type: ignore[arg-type]
            distance = xp.abs(xp.astype(outcome.x_adv, xp.float64) - xp.astype(x_part, xp.float64))
            largest = float(xp.max(distance))
            broken = _to_numpy(outcome.predictions != y_part).astype(bool)
            correct[still[broken]] = False
        result["robust"].append(correct.tolist())
        result["max"].append(largest)
        result["attacked"].append(int(still.size))
    return result


def _batches(data: Iterable[tuple[Array, Array]]) -> Iterator[tuple[int, Array, Array]]:
    for index, item in enumerate(data):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"data must yield (x, y) pairs, got {type(item).__name__} at batch {index}"
            )
        x, y = item
        if getattr(y, "shape", None) is None or len(y) != len(x):
            raise ValueError(
                f"batch {index}: y must hold one label per sample of x ({len(x)}), "
                f"got {getattr(y, 'shape', y)!r}"
            )
        yield index, x, y


def evaluate(
    model: object,
    data: Iterable[tuple[Array, Array]],
    attack: AttackSpec,
    eps: Sequence[float],
    *,
    checkpoint: str | Path | None = None,
    progress: bool | None = None,
) -> RobustnessReport:
    """Clean and robust accuracy of ``model`` on ``data`` at every eps.

    Args:
        model: As for the attacks (``nn.Module``, callable on tensors, or NumPy model).
        data: A ``DataLoader`` or any iterable of ``(x, y)`` batches, in the same order on
            every pass (no shuffling).
        attack: An :class:`IteratedSign` or :class:`FGSM` (its ``eps`` is replaced by each
            radius), or a factory ``eps -> attack``. ``IteratedSign(..., early_stop=True)``
            saves further work.
        eps: The radii, any order, no repeats.
        checkpoint: A JSON file for progress: written atomically after every batch, read on
            start to skip finished batches. Under ``torchrun`` each process uses its own
            file (``.rank<r>`` is appended).
        progress: Show a progress bar; default: when stderr is a terminal.

    Returns:
        The :class:`RobustnessReport`, samples in data order.

    Raises:
        ValueError: ``eps`` is empty, negative or repeats; the data is empty or a batch's
            labels do not match it; the checkpoint belongs to another evaluation.
        TypeError: ``data`` does not yield ``(x, y)`` pairs.
    """
    radii = _check_eps_list(eps)
    dist = _distributed()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and world > 1:
        path = path.with_name(f"{path.name}.rank{rank}")
    done = _Progress.load(path, _fingerprint(attack, radii))
    show = sys.stderr.isatty() if progress is None else progress
    seen = 0
    for index, x, y in _progress_bar(_batches(data), show):
        seen += 1
        if index % world != rank or index in done.batches:
            continue
        done.batches[index] = _evaluate_batch(model, x, y, attack, radii, index)
        done.save(path)
    if dist is not None:
        gathered: list[dict[int, dict[str, Any]]] = [{} for _ in range(world)]
        dist.all_gather_object(gathered, done.batches)
        merged = {k: v for part in gathered for k, v in part.items()}
    else:
        merged = done.batches
    if seen == 0 or not merged:
        raise ValueError("data must hold at least one batch, got none")
    ordered = [merged[i] for i in sorted(merged)]
    clean = tuple(c for batch in ordered for c in batch["clean"])
    return RobustnessReport(
        eps=radii,
        attack=_describe(attack),
        clean_correct=clean,
        robust_correct={
            e: tuple(c for batch in ordered for c in batch["robust"][i])
            for i, e in enumerate(radii)
        },
        max_perturbation={
            e: max(batch["max"][i] for batch in ordered) for i, e in enumerate(radii)
        },
        attacked={e: sum(batch["attacked"][i] for batch in ordered) for i, e in enumerate(radii)},
    )


def _describe(attack: AttackSpec) -> str:
    if isinstance(attack, (IteratedSign, FGSM)):
        fields = [f"{f.name}={getattr(attack, f.name)!r}" for f in dataclasses.fields(attack)]
        shown = [text for text in fields if not text.startswith("eps=")]
        return f"{type(attack).__name__}({', '.join(shown)})"
    return getattr(attack, "__name__", repr(attack))


def _progress_bar(items: Iterator[Any], show: bool) -> Iterator[Any]:
    if not show:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the demo extra
        return items
    return iter(tqdm(items, desc="evaluating", unit="batch"))


def smallest_breaking_eps(
    model: object,
    x: Array,
    y: Array,
    attack: IteratedSign,
    *,
    eps_max: float,
    iterations: int = 10,
) -> np.ndarray[Any, Any]:
    """Per sample, the smallest eps at which ``attack`` succeeds, by bisection.

    Each iteration attacks the whole batch once, every sample at the middle of its own
    interval (per-sample eps), and halves the interval: after ``iterations`` steps the
    answer is within ``eps_max / 2**iterations``. Samples misclassified without attack get
    0; samples the attack cannot break at ``eps_max`` get ``inf``. The accuracy at eps is
    then the share of samples whose smallest breaking eps exceeds it.

    Args:
        model: As for the attacks.
        x: Inputs ``(batch, ...)``.
        y: Labels ``(batch,)``.
        attack: The attack; its ``eps`` is replaced per sample.
        eps_max: The largest radius considered.
        iterations: Bisection steps.

    Returns:
        A float64 NumPy array ``(batch,)`` of upper bounds on the smallest breaking eps.
    """
    eps_max = check_real("eps_max", eps_max)
    xp = array_namespace(x)
    y = to_device(y, device(x))
    clean = _to_numpy(_predict(model, x) == y)
    low = np.zeros(len(clean))
    high = np.full(len(clean), eps_max)

    def breaks(radii: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        per_sample = xp.asarray(radii, dtype=xp.float64, device=device(x))
        outcome = attack.run(model, x, y, eps=per_sample)  # type: ignore[arg-type]
        return _to_numpy(outcome.predictions != y)

    breakable = breaks(high) | ~clean
    for _ in range(iterations):
        middle = (low + high) / 2
        broken = breaks(middle)
        high = np.where(broken, middle, high)
        low = np.where(broken, low, middle)
    result = np.where(breakable, high, math.inf)
    return np.where(clean, result, 0.0)
