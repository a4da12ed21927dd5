"""One batch of a sweep: the attacks in order at every radius, and the progress lines.

[`evaluate`][signattack.evaluation.evaluate] runs `evaluate_batch` on each batch it owns; the
audit and the escalation of an audited suite run it again on some samples of a batch
(`signattack.evaluation._escalation`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import numpy as np

from signattack._host import HostArray, copy_of, put_rows, to_flags, to_numpy
from signattack._progress import Stages, step_label
from signattack._typing import Array, as_model, device_of, is_array, namespace
from signattack.attacks import EpsAttack
from signattack.backends.registry import padded_count
from signattack.core.kernels import take_samples
from signattack.core.validation import narrow_eps_problem
from signattack.evaluation._cost import NOTHING, BatchCost, Meter, PassCount, of_result
from signattack.evaluation._judging import (
    Plan,
    broken_by_rule,
    check_ball,
    clean_predictions,
    moves_of,
)
from signattack.evaluation._specs import attack_at
from signattack.evaluation._units import radius_text
from signattack.evaluation.checkpoint import BatchResult
from signattack.evaluation.distributed import Ranks
from signattack.evaluation.standard import attack_names, traits_of
from signattack.masking import climbs_unsaturated, gradient_diagnoses, units_problem


def _unsaturated(plan: Plan) -> tuple[str, ...]:
    """The names of the plan's attacks that climb a loss that does not saturate (made at the
    first radius): the saturation diagnosis does not advise switching to what they use."""
    return tuple(
        traits.name
        for spec, traits in zip(plan.specs, plan.traits, strict=True)
        if climbs_unsaturated(attack_at(spec, plan.radii[0]))
    )


def attack_rng(seed: int | None, radius: float, attack_index: int) -> np.random.Generator | None:
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


def stage_text(
    radius: str,
    attack: str,
    counts: tuple[int, int],
    robust: tuple[int, int],
    batch: tuple[int, int | None],
    ranks: Ranks,
) -> str:
    """The line after ``attack`` ran at ``radius`` (as the report writes it) on a batch:
    ``counts`` (broke, tried), ``robust`` (robust, samples) so far at that radius, and
    ``batch`` (its number, from 1, among this process's ``batch[1]``; ``None``: unknown).

    Under several processes every count is this process's own, and the line says so:
    ``on this process (1 of 2)``. An attack that found no sample left to attack says so."""
    broke, tried = counts
    did = f"broke {broke} of {tried}" if tried else "nothing left to attack"
    kept, samples = robust
    share = f"{kept / samples:.1%}" if samples else "n/a"
    where = "" if ranks.world == 1 else f"on this process ({ranks.rank + 1} of {ranks.world}): "
    number, count = batch
    of = "" if count is None else f" of {count}"
    return (
        f"eps {radius}, {attack}: {did}; {where}robust accuracy so far {share} "
        f"({kept} of {samples}); batch {number}{of}"
    )


class Lines:
    """The progress lines of one evaluation: after each attack at each radius of a batch,
    the attack, the samples it broke, the robust accuracy so far at that radius, the time
    spent and an estimate of the time left. Under several processes the first alone speaks,
    of its own batches (numbered among them) and its own samples, and says so."""

    def __init__(self, show: bool | None, batches: int | None, ranks: Ranks) -> None:
        self.stages = Stages(show if ranks.rank == 0 else False)  # the first process alone
        self.batches = None if batches is None else sum(map(ranks.owns, range(batches)))
        self.ranks = ranks
        self.robust: dict[float, int] = {}
        self.samples = self.ran = self.passed = self.own = 0
        self.size = self.robust_here = 0

    def attacked(self, plan: Plan, radius: int, attack: int, broke: int, tried: int) -> None:
        """After the attack of index ``attack`` at the radius of index ``radius`` broke
        ``broke`` of ``tried``, leaving `robust_here` of the batch robust."""
        self.ran += 1
        self.passed += 1
        stages = len(plan.radii) * len(plan.specs)
        left = None if self.batches is None else self.batches * stages - self.passed
        robust = self.robust.get(plan.radii[radius], 0) + self.robust_here
        samples = self.samples + self.size
        box = None if plan.threat is None else (plan.threat.box.lower, plan.threat.box.upper)
        text = stage_text(
            radius_text(plan.radii[radius], box, plan.norm),
            attack_names(plan.traits)[attack],
            (broke, tried),
            (robust, samples),
            (self.own + 1, self.batches),
            self.ranks,
        )
        self.stages.done(text, self.ran, left)

    def begin(self, size: int) -> None:
        self.size, self.robust_here = size, 0

    def finished(self, plan: Plan, result: BatchResult, attacked: bool) -> None:
        """After one of this process's batches, attacked here or taken from the checkpoint."""
        for radius, robust in zip(plan.radii, result.robust, strict=True):
            self.robust[radius] = self.robust.get(radius, 0) + sum(robust)
        self.samples += result.size
        self.passed += 0 if attacked else len(plan.radii) * len(plan.specs)
        self.own += 1
        self.size = self.robust_here = 0


def evaluate_batch(
    model: object,
    x: Array,
    y: Array,
    plan: Plan,
    batch_index: int,
    digest: str,
    keep: bool = False,
    lines: Lines | None = None,
    breakers: list[int] | None = None,
) -> tuple[BatchResult, list[HostArray] | None]:
    """The batch's result, and with ``keep`` the point that decided each sample at each
    radius (on the host, in ``x``'s dtype); ``lines`` says how each attack did. A list
    ``breakers`` is filled with, per sample, the index of the attack that broke it (at the
    first radius where it fell), ``-1`` where none did."""
    xp = namespace(x)
    decided = copy_of(x) if keep else None
    points: list[HostArray] = []
    where = device_of(x)
    meter = Meter()  # the evaluation's own passes; the attacks count theirs
    own = meter.around(model)
    predictions, y = clean_predictions(own, x, y, plan.threat, draws=plan.draws)
    correct = to_flags(predictions == y)
    runnable = as_model(model)  # a backend has accepted it
    problems: tuple[str, ...] = ()
    if batch_index == 0 and plan.threat is not None:  # the first batch is probed
        units = units_problem(own, x, y, plan.threat)
        gradients = (
            gradient_diagnoses(as_model(own), x, y, plan.threat, unsaturated=_unsaturated(plan))
            if plan.gradients
            else ()
        )
        narrow = narrow_eps_problem(plan.radii[-1], plan.threat.box, plan.norm)
        found = (units, narrow)
        problems = (*gradients, *(problem for problem in found if problem is not None))
    spent: list[tuple[PassCount | None, ...]] = []
    clean = tuple(correct)
    fell = [-1] * len(correct)
    names = attack_names(plan.traits)
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
                    lines.attacked(plan, radius_index, attack_index, 0, 0)
                continue
            index = xp.asarray(static_shape(still, x), device=where)
            x_part, y_part = take_samples(x, index), take_samples(y, index)
            attack = attack_at(spec, radius)
            asked = traits_of(attack)
            rng = attack_rng(asked.seed, radius, attack_index)
            # run() predicts at the adversarial batch with its final forward pass.
            with step_label(f"{names[attack_index]} steps"):  # the bar of an attack's steps
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
                    fell[sample] = attack_index
            if decided is not None and any(fooled):
                hit = [i for i, broke in enumerate(fooled) if broke]
                put_rows(decided, [still[i] for i in hit], to_numpy(adversarial), hit)
            counts.append(sum(fooled))
            if lines is not None:
                lines.robust_here = sum(correct)
                lines.attacked(plan, radius_index, attack_index, sum(fooled), len(still))
        if decided is not None:
            points.append(copy_of(decided))  # a larger ball starts from these points
        robust.append(tuple(correct))
        largest.append(distance)
        broken.append(tuple(counts))
        spent.append(tuple(passes))
    cost = BatchCost(tuple(spent), meter.spent())
    if breakers is not None:
        breakers[:] = fell
    result = BatchResult(
        digest, clean, tuple(robust), tuple(largest), tuple(attacked), tuple(broken), problems, cost
    )
    return result, points if keep else None


def static_shape(still: list[int], x: Array) -> list[int]:
    """The indices of the samples to attack; for a backend that compiles per shape (JAX),
    padded with copies of the first to the next power of two (at most the batch), so that
    the sub-batches of a sweep share a few compiled computations instead of compiling one
    per size. The copies change nothing for the others: a model's output for one sample
    must not depend on the rest."""
    return still + [still[0]] * (padded_count(x, len(still)) - len(still))


def batches(data: Iterable[object]) -> Iterator[tuple[int, Array, Array]]:
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
