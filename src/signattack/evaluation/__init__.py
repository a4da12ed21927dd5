"""Robustness evaluation at scale: accuracy against eps over whole datasets.

[`evaluate`][signattack.evaluation.evaluate] attacks every batch of a dataset at every eps and
returns a [`RobustnessReport`][signattack.evaluation.RobustnessReport]. It wastes no work: eps
values are visited in increasing order, and a sample that is already misclassified (clean, or at a
smaller eps) counts as broken at every larger eps without being attacked again, since the smaller
ball lies inside the larger one. With a checkpoint path it saves its progress atomically after every
batch, and an interrupted run resumes where it stopped and ends with exactly the results of an
uninterrupted one; the checkpoint is bound to the model, the data, the attack, the radii and the
library version that produced it, and a resume with anything else is refused. Under ``torchrun``
each process evaluates its share of the batches and the results are combined with
``torch.distributed``; the report equals the single-process one, and when one process fails, all of
them stop.

[`smallest_breaking_eps`][signattack.evaluation.smallest_breaking_eps] finds, per sample, the
smallest eps at which the attack succeeds, by bisection: a whole robustness curve from one run.

The modules, one concern each: `report` (the result), `sweep` (the sweep), `checkpoint` and
`identity` (resuming, and what a checkpoint is bound to), `distributed` (several processes),
`bisection`, `standard` (the attacks and their presets; the fast preset in ``_fast``), `adversarial`
(the exported adversarial examples) and `verification` (evaluating the model at them again); the
clean pass and the one decision rule for clean and attacked predictions live in ``_judging``,
RobustBench's entry in ``_robustbench``, the report's text formats in ``_tables``, and what an
evaluation cost ([`Cost`][signattack.evaluation.Cost], counted in
[`PassCount`][signattack.evaluation.PassCount]s) in ``_cost``. Works with any backend; torch is
imported only where it is already in use.
"""

from signattack.evaluation._cost import Cost, PassCount
from signattack.evaluation._fast import Audit, EscalatingSquare, audit, fast_attacks
from signattack.evaluation.adversarial import Adversarial, load_adversarial
from signattack.evaluation.bisection import smallest_breaking_eps
from signattack.evaluation.distributed import PeerFailure
from signattack.evaluation.report import RobustnessReport
from signattack.evaluation.standard import (
    AttackFactory,
    Attacks,
    AttackSpec,
    AttackSuite,
    gradient_attacks,
    rand_attacks,
    standard_attacks,
)
from signattack.evaluation.sweep import evaluate
from signattack.evaluation.verification import Verification, verify

__all__ = [
    "Adversarial",
    "AttackFactory",
    "AttackSpec",
    "AttackSuite",
    "Attacks",
    "Audit",
    "Cost",
    "EscalatingSquare",
    "PassCount",
    "PeerFailure",
    "RobustnessReport",
    "Verification",
    "audit",
    "evaluate",
    "fast_attacks",
    "gradient_attacks",
    "load_adversarial",
    "rand_attacks",
    "smallest_breaking_eps",
    "standard_attacks",
    "verify",
]
