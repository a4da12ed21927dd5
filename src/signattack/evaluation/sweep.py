"""The sweep over a dataset: [`evaluate`][signattack.evaluation.sweep.evaluate].

Radii are visited in increasing order, and a sample that is already misclassified (clean, or at a
smaller eps) counts as broken at every larger eps without being attacked again, since the smaller
ball lies inside the larger one.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from signattack._host import HostArray, copy_of, put_rows, to_flags, to_numpy
from signattack._lazy import moved_attributes
from signattack._progress import Stages, step_bars
from signattack._progress import progress as progress_of
from signattack._typing import Array, ArrayT, Model, as_model, device_of, is_array, namespace
from signattack.attacks import EpsAttack
from signattack.backends.registry import padded_count
from signattack.core.kernels import take_samples
from signattack.core.validation import check_real
from signattack.evaluation._cost import NOTHING, BatchCost, Meter, PassCount, of_result, summed
from signattack.evaluation._cost import total as total_of
from signattack.evaluation._cost import totals_json as cost_totals
from signattack.evaluation._judging import (
    Plan,
    broken_by_rule,
    check_ball,
    clean_predictions,
    is_randomized,
    moves_of,
)
from signattack.evaluation._specs import attack_at, specs_of
from signattack.evaluation._units import radius_text
from signattack.evaluation.adversarial import Collected, check_path, store_points, stored_points
from signattack.evaluation.checkpoint import BatchResult, Checkpoint
from signattack.evaluation.distributed import PeerFailure, Ranks
from signattack.evaluation.identity import Identity, batch_digest, run_metadata
from signattack.evaluation.report import RobustnessReport
from signattack.evaluation.standard import (
    AttackSuite,
    attack_names,
    attack_record,
    masking_warnings,
    traits_of,
)
from signattack.masking import gradient_diagnoses, units_problem

if TYPE_CHECKING:  # not imported at run time, so that the old names below warn
    from signattack.evaluation._specs import Attacks

__all__ = ["evaluate"]

# Where the attack-spec types lived until 0.2, importable with a deprecation warning.
__getattr__ = moved_attributes(
    __name__,
    {name: ("signattack.evaluation", name) for name in ("AttackFactory", "AttackSpec", "Attacks")},
)


def _check_eps_list(eps: Sequence[float]) -> tuple[float, ...]:
    if isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a sequence of radii, got the single number {eps!r}")
    values = tuple(check_real("eps", value) for value in eps)
    if not values:
        raise ValueError("eps must hold at least one radius, got an empty sequence")
    if len(set(values)) != len(values):
        raise ValueError(f"eps must not repeat a radius, got {list(eps)!r}")
    return tuple(sorted(values))


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (also through links, or before either exists)."""
    return first.resolve() == second.resolve() or (
        first.exists() and second.exists() and first.samefile(second)
    )


def _attack_rng(seed: int | None, radius: float, attack_index: int) -> np.random.Generator | None:
    """The generator an attack of the suite draws its root key from at one radius.

    It depends on the seed, the radius and the attack's place in the suite alone, not on
    the batch: the attacks key every draw by the sample itself as well
    (`signattack.core.streams`), so a sample's verdict is the same whatever batch,
    order or process it lands in, and a resumed or sharded run draws what an uninterrupted
    single-process run draws.
    """
    if seed is None:
        return None
    radius_bits = int.from_bytes(struct.pack("<d", radius), "little")
    return np.random.default_rng([seed, radius_bits, attack_index])


class _Lines:
    """The progress lines of one evaluation: after each attack at each radius of a batch,
    the attack, the samples it broke, the robust accuracy so far at that radius (over this
    process's batches), the time spent and an estimate of the time left."""

    def __init__(self, show: bool | None, batches: int | None, ranks: Ranks) -> None:
        self.stages = Stages(show if ranks.rank == 0 else False)  # the first process alone
        self.batches = None if batches is None else sum(map(ranks.owns, range(batches)))
        self.robust: dict[float, int] = {}
        self.samples = self.ran = self.passed = 0

    def attacked(self, plan: Plan, index: tuple[int, int, int], broke: int, tried: int) -> None:
        """After the attack ``index`` (batch, radius, attack) broke ``broke`` of ``tried``,
        leaving `robust_here` of the batch robust."""
        batch, radius, attack = index
        self.ran += 1
        self.passed += 1
        stages = len(plan.radii) * len(plan.specs)
        left = None if self.batches is None else self.batches * stages - self.passed
        robust = self.robust.get(plan.radii[radius], 0) + self.robust_here
        samples = self.samples + self.size
        box = None if plan.threat is None else (plan.threat.box.lower, plan.threat.box.upper)
        of = "" if self.batches is None else f" of {self.batches}"
        self.stages.done(
            f"eps {radius_text(plan.radii[radius], box, plan.norm)}, "
            f"{attack_names(plan.traits)[attack]}: broke {broke} of {tried}; robust accuracy "
            f"so far {robust / samples:.1%} ({robust} of {samples}); batch {batch + 1}{of}",
            self.ran,
            left,
        )

    def begin(self, size: int) -> None:
        self.size, self.robust_here = size, 0

    def finished(self, plan: Plan, result: BatchResult, attacked: bool) -> None:
        """After a batch, attacked here or taken from the checkpoint."""
        for radius, robust in zip(plan.radii, result.robust, strict=True):
            self.robust[radius] = self.robust.get(radius, 0) + sum(robust)
        self.samples += result.size
        self.passed += 0 if attacked else len(plan.radii) * len(plan.specs)


def _evaluate_batch(
    model: object,
    x: Array,
    y: Array,
    plan: Plan,
    batch_index: int,
    digest: str,
    keep: bool = False,
    lines: _Lines | None = None,
) -> tuple[BatchResult, list[HostArray] | None]:
    """The batch's result, and with ``keep`` the point that decided each sample at each
    radius (on the host, in ``x``'s dtype); ``lines`` says how each attack did."""
    xp = namespace(x)
    decided = copy_of(x) if keep else None
    points: list[HostArray] = []
    where = device_of(x)
    meter = Meter()  # the evaluation's own passes; the attacks count theirs
    own = meter.around(model, x)
    predictions, y = clean_predictions(own, x, y, plan.threat, draws=plan.draws)
    correct = to_flags(predictions == y)
    runnable = as_model(model)  # a backend has accepted it
    problems: tuple[str, ...] = ()
    if batch_index == 0 and plan.threat is not None:  # the first batch is probed
        units = units_problem(own, x, y, plan.threat)
        gradients = gradient_diagnoses(as_model(own), x, y, plan.threat) if plan.gradients else ()
        problems = (*gradients, *(() if units is None else (units,)))
    spent: list[tuple[PassCount | None, ...]] = []
    clean = tuple(correct)
    robust, largest, attacked, broken = [], [], [], []
    if lines is not None:
        lines.begin(len(correct))
    for radius_index, radius in enumerate(plan.radii):
        attacked.append(sum(correct))
        distance = 0.0
        counts = []
        passes: list[PassCount | None] = []
        for attack_index, spec in enumerate(plan.specs):
            still = [index for index, flag in enumerate(correct) if flag]
            if not still:
                counts.append(0)
                passes.append(NOTHING)
                if lines is not None:
                    lines.robust_here = 0
                    lines.attacked(plan, (batch_index, radius_index, attack_index), 0, 0)
                continue
            index = xp.asarray(_static_shape(still, x), device=where)
            x_part, y_part = take_samples(x, index), take_samples(y, index)
            attack = attack_at(spec, radius)
            asked = traits_of(attack)
            rng = _attack_rng(asked.seed, radius, attack_index)
            # run() predicts at the adversarial batch with its final forward pass.
            if isinstance(attack, EpsAttack):
                outcome = attack.run(runnable, x_part, y_part, rng=rng)
            else:
                outcome = attack.run(runnable, x_part, y_part)
            count = len(still)
            passes.append(of_result(outcome, asked.description, attack))
            adversarial, labels = outcome.x_adv[:count, ...], y_part[:count, ...]  # no padding
            moves = moves_of(adversarial, x_part[:count, ...], plan.norm)
            check_ball(adversarial, x_part[:count, ...], radius, plan, asked.description)
            distance = max(distance, *moves)
            predicted = outcome.predictions[:count, ...]
            fooled = broken_by_rule(own, predicted, adversarial, labels, moves, asked.eot, plan)
            for sample, broke in zip(still, fooled, strict=True):
                if broke:
                    correct[sample] = False
            if decided is not None and any(fooled):
                hit = [i for i, broke in enumerate(fooled) if broke]
                put_rows(decided, [still[i] for i in hit], to_numpy(adversarial), hit)
            counts.append(sum(fooled))
            if lines is not None:
                lines.robust_here = sum(correct)
                stage = (batch_index, radius_index, attack_index)
                lines.attacked(plan, stage, sum(fooled), len(still))
        if decided is not None:
            points.append(copy_of(decided))  # a larger ball starts from these points
        robust.append(tuple(correct))
        largest.append(distance)
        broken.append(tuple(counts))
        spent.append(tuple(passes))
    cost = BatchCost(tuple(spent), meter.spent())
    result = BatchResult(
        digest, clean, tuple(robust), tuple(largest), tuple(attacked), tuple(broken), problems, cost
    )
    return result, points if keep else None


def _static_shape(still: list[int], x: Array) -> list[int]:
    """The indices of the samples to attack; for a backend that compiles per shape (JAX),
    padded with copies of the first to the next power of two (at most the batch), so that
    the sub-batches of a sweep share a few compiled computations instead of compiling one
    per size. The copies change nothing for the others: a model's output for one sample
    must not depend on the rest."""
    return still + [still[0]] * (padded_count(x, len(still)) - len(still))


def _batches(data: Iterable[object]) -> Iterator[tuple[int, Array, Array]]:
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data must be an iterable of (x, y) batches (a DataLoader, a list), "
            f"got {type(data).__name__}"
        )
    for index, item in enumerate(data):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"data must yield (x, y) pairs, got {type(item).__name__} at batch {index}"
            )
        x, y = item
        if not is_array(x) or not is_array(y):
            raise TypeError(
                f"batch {index}: x and y must be arrays (torch.Tensor or numpy.ndarray), "
                f"got {type(x).__name__} and {type(y).__name__}"
            )
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"batch {index} holds no samples: x has shape {tuple(x.shape)}")
        if tuple(y.shape) != (x.shape[0],):
            raise ValueError(
                f"batch {index}: y must hold one label per sample of x ({x.shape[0]}), "
                f"got shape {tuple(y.shape)}"
            )
        yield index, x, y


def evaluate(
    model: Model[ArrayT],
    data: Iterable[tuple[ArrayT, ArrayT]],
    attack: Attacks,
    eps: Sequence[float],
    *,
    checkpoint: str | Path | None = None,
    progress: bool | None = None,
    name: str | None = None,
    model_name: str | None = None,
    adversarial: str | Path | None = None,
) -> RobustnessReport:
    """Clean and robust accuracy of ``model`` on ``data`` at every eps.

    Every sample is checked before any is attacked: inputs finite and inside the attack's bounds,
    labels classes of the model. With several attacks, each runs in order on the samples the
    previous ones left robust: a sample is robust at an eps only if every attack fails on it, and
    the report says which attack broke how many (``broken_by``).

    One decision rule makes every prediction, clean or attacked: the class of the mean logits of as
    many passes as the suite's attack that averages most (its largest ``eot``; one pass for a
    deterministic suite), as an attack with that ``eot`` decides. The breaks an attack with fewer
    passes claims are decided again by that rule, and a point equal to the clean input is never a
    break. Everything the evaluation needs of an attack (name, box, mode, seed, passes, whether it
    asks for gradients) is read from the attack made at each radius, so a factory counts as the
    attack it makes; the gradient checks run only when an attack asks for a gradient.

    Args:
        model: As for the attacks (``nn.Module``, callable on tensors, or NumPy model).
        data: A ``DataLoader`` or any iterable of ``(x, y)`` batches, in the same order on
            every pass (no shuffling).
        attack: An attack whose ``eps`` is replaced by each radius (``IteratedSign``,
            ``FGSM``, ``APGD``, ``APGDT``: any [`EpsAttack`][signattack.attacks.EpsAttack]), a
            factory ``eps -> attack``, or a sequence of them run in order
            ([`standard_attacks`][signattack.evaluation.standard_attacks] is the worst-case preset).
            ``IteratedSign(..., early_stop=True)`` saves further work.
        eps: The radii, any order, no repeats.
        checkpoint: A JSON file for progress: written atomically after every batch, read on
            start to skip finished batches. It is bound to this evaluation: the model (its class and
            a digest of its parameters and buffers), the attack's settings, the radii, every batch's
            inputs and labels, and the library's version. Under ``torchrun`` each process uses its
            own file (``.rank<r>`` is appended).
        progress: ``True`` or ``False`` to show progress or not; by default a bar when
            stderr is a terminal or in a notebook, and elsewhere (a log file, a pipe) a line every
            30 s once the evaluation has run that long. Shown as well: after each attack at each
            radius, a line with the attack, the samples it broke, the robust accuracy so far, the
            time spent and an estimate of the time left (elsewhere, at most one every 30 s). Under
            ``torchrun`` only the first process shows progress.
        name: Names the attack in the report and the checkpoint, instead of its
            description. Needed to checkpoint a factory that has no stable description (a lambda or
            a closure); give each different attack its own name.
        model_name: Identifies the model in the checkpoint instead of a digest of its
            state. Needed to checkpoint a model that is a lambda or a closure.
        adversarial: A ``.npz`` or ``.pt`` file to write, at the end, the point that decided
            each sample at each radius, with the clean inputs, the labels and the report:
            RobustBench's ``x_adv``, and what [`verify`][signattack.evaluation.verify] re-evaluates.
            With a checkpoint, each batch's points are kept beside the file (``FILE.parts/``) so
            that a resumed run writes them all. One process only.

    Returns:
        The [`RobustnessReport`][signattack.evaluation.sweep.RobustnessReport] of exactly the
            samples of ``data``, in order.

    Raises:
        ValueError: ``eps`` is empty, negative or repeats; the data is empty, a batch is
            empty, an input lies outside the bounds or a label is not a class of the model; the
            checkpoint is damaged or belongs to another evaluation.
        TypeError: ``data`` does not yield ``(x, y)`` pairs of arrays.
        PeerFailure: Under ``torchrun``, another process failed.
    """
    radii = _check_eps_list(eps)
    specs = specs_of(attack)
    alternative = attack.randomized if isinstance(attack, AttackSuite) else None
    randomized = None if alternative is None else specs_of(alternative)
    for label, value in (("name", name), ("model_name", model_name)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{label} must be a non-empty str or None, got {value!r}")
    ranks = Ranks.current()
    path = None if checkpoint is None else Path(checkpoint)
    output = None if adversarial is None else check_path(adversarial)
    if output is not None and path is not None and _same_file(output, path):
        raise ValueError(
            f"checkpoint and adversarial must be different files, got {str(path)!r} for both"
        )
    if output is not None and ranks.world > 1:
        raise ValueError(
            "adversarial= is written by a single process: under torchrun, evaluate without "
            "it, or run the export in one process"
        )
    collected = Collected(len(radii)) if output is not None else None
    parts = None if output is None or path is None else Path(f"{output}.parts")
    try:
        if path is not None and ranks.world > 1:
            path = path.with_name(f"{path.name}.rank{ranks.rank}")
        identity = None
        if path is not None:
            identity = Identity.of(
                model, specs, radii, name=name, model_name=model_name, randomized=randomized
            )
        done = Checkpoint.open(path, identity)
        started = time.perf_counter()
        seen = resumed = 0
        digests: list[str] = []
        device = "unknown"
        switched = False
        results: dict[int, BatchResult] = {}
        outside = Meter()  # the passes outside every batch: the randomness check
        plan = Plan.of(specs, radii)  # once
        total = len(data) if isinstance(data, Sized) else None  # a DataLoader, a list
        shown = progress if ranks.rank == 0 else False  # the first process speaks for all
        batches = progress_of(_batches(data), "evaluating", "batches", shown, total=total)
        lines = _Lines(progress, total, ranks)
        for index, x, y in batches:
            seen += 1
            if index == 0:
                device = str(device_of(x))
                checked = outside.around(model, x)
                if randomized is not None and is_randomized(checked, x, y, plan.threat):
                    plan, switched = Plan.of(randomized, radii), True  # the preset's version
            digests.append(batch_digest(x, y))
            if ranks.owns(index):
                digest = "" if path is None else digests[-1]
                result = done.result(index, digest, int(x.shape[0]))
                points = None
                if result is not None and parts is not None:
                    points = stored_points(parts, index, digest, identity)
                    if points is None:  # finished without its points kept: attack it again
                        result = None
                taken = result is not None
                resumed += taken
                if result is None:
                    with step_bars(shown is not False):  # within attacks that run long
                        result, points = _evaluate_batch(
                            model, x, y, plan, index, digest, collected is not None, lines
                        )
                    if parts is not None and points is not None:
                        store_points(parts, index, digest, points, identity)
                    done.record(index, result)
                lines.finished(plan, result, attacked=not taken)
                if collected is not None and points is not None:
                    collected.add(x, y, points)
                results[index] = result
            ranks.round_done(index)
        if seen:
            done.finish(seen)
    except PeerFailure:
        raise
    except BaseException:
        ranks.fail()
        raise
    gathered = ranks.gather((results, outside.spent()))  # every process's, summed below
    merged = {k: v for part, _ in gathered for k, v in part.items()}
    if seen == 0:
        raise ValueError("data must hold at least one batch, got none")
    ordered = [merged[i] for i in range(seen)]
    names = attack_names(plan.traits)
    broken_by = {
        e: {label: sum(batch.broken[i][j] for batch in ordered) for j, label in enumerate(names)}
        for i, e in enumerate(radii)
    }
    samples = sum(batch.size for batch in ordered)
    cost = summed([b.cost for b in ordered], radii, names, total_of(p for _, p in gathered))
    threat = plan.threat
    box = None if threat is None else (threat.box.lower, threat.box.upper)
    metadata = run_metadata(
        model,
        [attack_record(attack_at(spec, radii[0])) for spec in plan.specs],
        model_name=model_name,
        bounds=box,
        model_mode="eval" if threat is None else threat.model_mode,
        decision_draws=plan.draws,
        samples=samples,
        batches=seen,
        data_digest=hashlib.sha256("".join(digests).encode()).hexdigest(),
        device=device,
        seconds=time.perf_counter() - started,
        resumed=resumed,
        randomized=switched,
    )
    metadata["passes"] = cost_totals(cost, samples)
    report = RobustnessReport(
        eps=radii,
        attack=name if name is not None else " + ".join(t.description for t in plan.traits),
        clean_correct=tuple(c for batch in ordered for c in batch.clean),
        robust_correct={
            e: tuple(c for batch in ordered for c in batch.robust[i]) for i, e in enumerate(radii)
        },
        max_perturbation={
            e: max(batch.largest[i] for batch in ordered) for i, e in enumerate(radii)
        },
        attacked={e: sum(batch.attacked[i] for batch in ordered) for i, e in enumerate(radii)},
        warnings=merged[0].problems + masking_warnings(plan.traits, names, broken_by, samples, box),
        broken_by=broken_by,
        metadata=metadata,
        cost=cost,
    )
    if collected is not None and output is not None:
        collected.save(output, report)
    return report
