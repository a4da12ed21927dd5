"""The cost of an evaluation in its report: per radius and attack, the forward and backward
sample-passes its model saw, and the evaluation's own, equal to what a counter around the
model sees; kept by checkpoints, shown by every table, unknown (never a made-up 0) where
they were not counted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from signattack import APGD, IteratedSign
from signattack.attacks import AttackResult
from signattack.evaluation import RobustnessReport, evaluate, standard_attacks
from signattack.evaluation._cost import Cost, PassCount
from signattack.evaluation._fast import audit
from signattack.evaluation.sweep import _attack_rng

SHAPE = (1, 4, 4)
CLASSES = 5


class Counter(torch.nn.Module):
    """Counts the samples of every forward pass, and of every backward pass through a
    hook on its output."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_count = self.backward_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        samples = x.shape[0]
        self.forward_count += samples
        out = self.inner(x.double())
        if out.requires_grad:

            def seen(grad: torch.Tensor) -> None:
                self.backward_count += samples

            out.register_hook(seen)
        return out

    def counts(self) -> tuple[int, int]:
        return self.forward_count, self.backward_count


def _model(seed: int = 0) -> Counter:
    rng = np.random.default_rng(seed)
    linear = torch.nn.Linear(int(np.prod(SHAPE)), CLASSES).double()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(rng.normal(scale=0.02, size=(CLASSES, 16))))
        linear.bias.copy_(torch.from_numpy(rng.normal(size=CLASSES)))
    return Counter(torch.nn.Sequential(torch.nn.Flatten(), linear))


def _data(count: int = 7, size: int = 7, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` samples labelled as the model classifies most of them, in batches of
    ``size``."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(np.round(rng.uniform(0, 255, size=(count, *SHAPE))))
    with torch.no_grad():
        y = _model()(x).argmax(1)
    y[::3] = (y[::3] + 1) % CLASSES  # a few misclassified from the start
    return [(x[i : i + size], y[i : i + size]) for i in range(0, count, size)]


def _spent(report: RobustnessReport) -> tuple[int, int]:
    assert report.cost is not None
    assert report.cost.total is not None
    return report.cost.total.forward, report.cost.total.backward


SUITES = {
    "sign": lambda norm: [IteratedSign(0.0, 4, step_size=2.0)],
    "apgd": lambda norm: [APGD(0.0, 4, seed=0, norm=norm)],
    "apgd-early": lambda norm: [APGD(0.0, 4, seed=0, norm=norm, early_stop=True)],
    "sign+apgd": lambda norm: [
        IteratedSign(0.0, 3, step_size=4.0, early_stop=True),
        APGD(0.0, 3, seed=1, norm=norm),
    ],
}


@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_reported_cost_is_what_the_model_saw(suite, norm):
    if norm == "l2" and suite.startswith("sign"):
        pytest.skip("IteratedSign is an L-inf attack")
    model = _model()
    radii = [8.0, 64.0] if norm == "linf" else [40.0, 400.0]
    report = evaluate(model, _data(7, 4), SUITES[suite](norm), radii, progress=False)
    assert _spent(report) == model.counts()
    assert report.forward_equivalents == model.forward_count + 2 * model.backward_count
    assert report.forward_equivalents_per_sample == report.forward_equivalents / 7
    passes = report.metadata["passes"]
    assert isinstance(passes, dict)
    assert (passes["forward"], passes["backward"]) == model.counts()
    assert report.cost is not None
    assert report.cost.evaluation is not None
    assert report.cost.evaluation.forward >= 7  # the clean pass at least
    assert list(report.cost.attacks) == list(report.eps)
    for eps in report.eps:
        assert list(report.cost.attacks[eps]) == list(report.broken_by[eps])


def test_each_attack_costs_what_it_costs_alone_on_the_samples_it_was_handed():
    attacks = [IteratedSign(0.0, 3, step_size=4.0, early_stop=True), APGD(0.0, 3, seed=1)]
    ((x, y),) = _data(7, 7)
    radii = (8.0, 24.0)
    report = evaluate(_model(), [(x, y)], attacks, list(radii), progress=False)
    assert report.cost is not None
    correct = list(report.clean_correct)
    for eps in radii:
        for index, (attack, name) in enumerate(zip(attacks, report.broken_by[eps], strict=True)):
            still = [i for i, flag in enumerate(correct) if flag]
            if not still:
                assert report.cost.attacks[eps][name] == PassCount(0, 0)
                continue
            alone = _model()
            made = attack.with_eps(eps)
            result = made.run(alone, x[still], y[still], rng=_attack_rng(made.seed, eps, index))
            assert report.cost.attacks[eps][name] == PassCount(*alone.counts())
            assert alone.counts() == (result.forward_passes, result.backward_passes)
            for i, broke in zip(still, result.success.tolist(), strict=True):
                correct[i] = correct[i] and not broke


@pytest.mark.slow
def test_the_standard_suite_reports_what_the_model_saw():
    model = _model()
    suite = standard_attacks(3, queries=10, seed=0)
    report = evaluate(model, _data(5, 5), suite, [16.0], progress=False)
    assert _spent(report) == model.counts()
    assert report.cost is not None
    assert all(count is not None for count in report.cost.attacks[16.0].values())


def test_a_resumed_evaluation_reports_the_counts_of_an_uninterrupted_one(tmp_path):
    data = _data(7, 3)
    attacks = [APGD(0.0, 3, seed=0)]
    whole = evaluate(_model(), data, attacks, [8.0, 32.0], progress=False)

    def broken_after_one():
        yield data[0]
        raise KeyboardInterrupt

    path = tmp_path / "run.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            _model(), broken_after_one(), attacks, [8.0, 32.0], progress=False, checkpoint=path
        )
    resumed = evaluate(_model(), data, attacks, [8.0, 32.0], progress=False, checkpoint=path)
    assert resumed.metadata["resumed_batches"] == 1
    assert resumed.cost == whole.cost
    assert resumed.cost is not None
    assert resumed.cost.total is not None


def test_a_checkpoint_without_counts_resumes_with_the_cost_unknown(tmp_path):
    data = _data(7, 3)
    path = tmp_path / "old.json"
    attacks = [IteratedSign(0.0, 2, step_size=4.0)]
    evaluate(_model(), data, attacks, [8.0], progress=False, checkpoint=path)
    document = json.loads(path.read_text())
    for entry in document["batches"].values():
        del entry["cost"]  # as the previous version wrote it
    path.write_text(json.dumps(document))
    report = evaluate(_model(), data, attacks, [8.0], progress=False, checkpoint=path)
    assert report.cost is not None
    assert report.cost.total is None
    assert report.cost.evaluation is None
    assert list(report.cost.attacks[8.0].values()) == [None]
    assert report.forward_equivalents is None
    assert report.forward_equivalents_per_sample is None
    assert report.metadata["passes"] is None
    assert "unknown" in report.table()
    assert "unknown" in report.cost_table()


def test_a_checkpoint_with_damaged_counts_is_refused(tmp_path):
    data = _data(7, 7)
    path = tmp_path / "run.json"
    attacks = [IteratedSign(0.0, 2, step_size=4.0)]
    evaluate(_model(), data, attacks, [8.0], progress=False, checkpoint=path)
    document = json.loads(path.read_text())
    document["batches"]["0"]["cost"]["attacks"][0][0]["forward"] = -3
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"damaged.*forward"):
        evaluate(_model(), data, attacks, [8.0], progress=False, checkpoint=path)


def test_per_sample_passes_do_not_depend_on_the_batch_size():
    attacks = [IteratedSign(0.0, 3, step_size=2.0), IteratedSign(0.0, 2, step_size=1.5)]
    one = evaluate(_model(), _data(7, 1), attacks, [4.0, 16.0], progress=False)
    seven = evaluate(_model(), _data(7, 7), attacks, [4.0, 16.0], progress=False)
    assert one.cost is not None
    assert seven.cost is not None
    assert one.robust_correct == seven.robust_correct
    assert one.cost.attacks == seven.cost.attacks
    assert any(count != PassCount(0, 0) for count in one.cost.attacks[16.0].values())


@dataclass(frozen=True)
class Uncounted:
    """A user's attack whose result does not count its passes."""

    eps: float
    name: str = "mine"

    def __call__(self, model: Any, x: Any, y: Any) -> Any:
        return self.run(model, x, y).x_adv

    def run(self, model: Any, x: Any, y: Any) -> AttackResult[Any]:
        result = IteratedSign(self.eps, 2, step_size=1.0).run(model, x, y)
        return AttackResult(result.x_adv, result.losses, result.predictions, result.success)


def test_an_attack_that_does_not_count_its_passes_is_unknown_not_zero():
    report = evaluate(_model(), _data(7, 7), lambda eps: Uncounted(eps), [8.0], progress=False)
    assert report.cost is not None
    assert list(report.cost.attacks[8.0].values()) == [None]
    assert report.cost.evaluation is not None
    assert report.cost.evaluation.forward > 0
    assert report.cost.total is None
    assert report.forward_equivalents is None
    line = next(row for row in report.table().splitlines() if row.startswith("8"))
    assert "unknown" in line
    assert "cost: unknown" in report.table()
    assert "unknown" in report.cost_table()
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again.cost == report.cost


@pytest.fixture(scope="module")
def counted() -> RobustnessReport:
    attacks = [IteratedSign(0.0, 2, step_size=4.0), APGD(0.0, 2, seed=0)]
    return evaluate(_model(), _data(7, 7), attacks, [8.0, 32.0], progress=False)


def test_every_table_shows_the_cost(counted):
    assert counted.cost is not None
    assert counted.cost.total is not None
    per_sample = f"{counted.cost.total.forward_equivalents / 7:,.1f}"
    assert "passes/sample" in counted.table()
    assert per_sample in counted.table()
    assert "passes/sample" in counted.to_markdown()
    assert "passes/sample" in counted.to_latex()
    assert "cost:" in counted._repr_markdown_()
    header, clean, *rows = counted.to_summary_csv().splitlines()
    assert "forward_equivalents" in header.split(",")
    column = header.split(",").index("forward_equivalents")
    at = [counted.cost.at(e) for e in counted.eps]
    assert [int(row.split(",")[column]) for row in rows] == [c.forward_equivalents for c in at]
    own = counted.cost.evaluation
    assert own is not None
    assert int(clean.split(",")[column]) == own.forward_equivalents
    breakdown = counted.cost_table().splitlines()
    assert len(breakdown) == 1 + 2 * 2 + 2  # header, two attacks at two radii, own, total
    assert breakdown[-1].split()[1:4] == [
        f"{counted.cost.total.forward:,}",
        f"{counted.cost.total.backward:,}",
        f"{counted.cost.total.forward_equivalents:,}",
    ]


def test_the_cost_survives_json_and_old_reports_load_without_one(counted):
    again = RobustnessReport.from_dict(json.loads(counted.to_json()))
    assert again.cost == counted.cost
    old = counted.to_dict()
    del old["cost"]
    legacy = RobustnessReport.from_dict(old)
    assert legacy.cost is None
    assert legacy.forward_equivalents is None
    assert "passes/sample" not in legacy.table()
    with pytest.raises(ValueError, match="records no cost"):
        legacy.cost_table()


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            lambda c: c["attacks"]["8.0"].update({"IteratedSign": {"forward": -1, "backward": 0}}),
            "forward",
        ),
        (
            lambda c: c["attacks"]["8.0"].update({"IteratedSign": {"forward": 2.5, "backward": 0}}),
            "forward",
        ),
        (lambda c: c["evaluation"].update({"backward": True}), "backward"),
        (lambda c: c["attacks"].pop("8.0"), "cost.attacks"),
        (lambda c: c["attacks"].update({"9.0": c["attacks"]["8.0"]}), "cost.attacks"),
        (lambda c: c["attacks"]["32.0"].update({"FGSM": None}), "cost.attacks"),
        (lambda c: c["attacks"]["8.0"].update({"IteratedSign": [1, 2]}), "cost.attacks"),
        (lambda c: c.pop("evaluation"), "cost"),
    ],
)
def test_a_damaged_cost_is_a_named_error(counted, damage, named):
    data = json.loads(counted.to_json())
    damage(data["cost"])
    with pytest.raises(ValueError, match=named):
        RobustnessReport.from_dict(data)


def test_a_report_checks_its_cost(counted):
    assert counted.cost is not None
    fields = {k: getattr(counted, k) for k in ("eps", "attack", "clean_correct", "robust_correct")}
    fields |= {k: getattr(counted, k) for k in ("max_perturbation", "attacked", "broken_by")}
    renamed = Cost(
        {e: {f"x{n}": c for n, c in row.items()} for e, row in counted.cost.attacks.items()},
        counted.cost.evaluation,
    )
    with pytest.raises(ValueError, match=r"cost.attacks\[8.0\] must name the attacks"):
        RobustnessReport(**fields, cost=renamed)
    with pytest.raises(ValueError, match=r"cost\.attacks must have the keys"):
        RobustnessReport(**fields, cost=Cost({8.0: counted.cost.attacks[8.0]}, None))
    with pytest.raises(TypeError, match="cost must be a Cost"):
        RobustnessReport(**fields, cost={"evaluation": None})
    with pytest.raises(TypeError, match="forward"):
        PassCount(True, 0)
    with pytest.raises(ValueError, match="backward"):
        PassCount(0, -1)
    with pytest.raises(TypeError, match=r"cost\.evaluation"):
        Cost(counted.cost.attacks, (1, 2))  # type: ignore[arg-type]


def test_the_audit_books_its_passes_apart():
    model = _model()
    data = _data(7, 7)
    fast = [IteratedSign(0.0, 2, step_size=4.0)]
    found = audit(model, data, 8.0, share=1.0, fast=fast, standard=[APGD(0.0, 2, seed=0)])
    assert found.fast.cost is not None
    assert found.standard.cost is not None
    assert found.passes == PassCount(*model.counts())
    assert found.passes == found.fast.cost.total + found.standard.cost.total  # type: ignore[operator]


def _clear_linear(features: int = 4, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Weights and inputs whose classes are decided by a wide margin (about 9 logits), so
    that every backend and dtype classifies every sample alike."""
    weight = np.full((classes, features), 0.01)
    weight[np.arange(classes), np.arange(classes)] = 0.05
    x = np.full((8, features), 20.0)
    x[np.arange(8), np.arange(8) % classes] = 200.0
    return weight, x


class CountingLinear:
    """A NumPy model (``z = W x``) that counts the samples of its calls and vjps."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight
        self.forward_count = self.backward_count = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.forward_count += x.shape[0]
        return x @ self.weight.T

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        self.backward_count += x.shape[0]
        return cotangent @ self.weight


STEPS, BATCH = 3, 4


def _by_hand() -> tuple[PassCount, PassCount]:
    """The attack's and the evaluation's own passes of `IteratedSign` with `STEPS` steps on
    two batches of `BATCH` samples, every sample classified right: per batch the attack
    makes a forward and backward pass a step and a final forward pass; the evaluation a
    clean pass per batch and, on the first, the units check (one pass: the accuracy is
    high) and the gradient probe (two forward passes and one with a gradient)."""
    attack = PassCount(2 * (STEPS + 1) * BATCH, 2 * STEPS * BATCH)
    own = PassCount(2 * BATCH + BATCH + 3 * BATCH, BATCH)
    return attack, own


def _check_by_hand(report: RobustnessReport) -> None:
    attack, own = _by_hand()
    assert report.clean_correct == (True,) * 2 * BATCH
    assert report.attacked == {8.0: 2 * BATCH}
    assert report.cost is not None
    assert dict(report.cost.attacks[8.0]) == {"IteratedSign": attack}
    assert report.cost.evaluation == own
    assert report.cost.total == attack + own


def test_the_evaluations_own_passes_on_numpy_are_counted_exactly():
    weight, x = _clear_linear()
    model = CountingLinear(weight)
    y = np.argmax(x @ weight.T, axis=1)
    data = [(x[:BATCH], y[:BATCH]), (x[BATCH:], y[BATCH:])]
    report = evaluate(model, data, IteratedSign(0.0, STEPS, step_size=2.0), [8.0], progress=False)
    _check_by_hand(report)
    assert _spent(report) == (model.forward_count, model.backward_count)


@pytest.mark.slow  # JAX compiles the clean pass, the probe and the loop: about 7 s
def test_the_evaluations_own_passes_on_jax_are_counted_exactly():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    weight, x = _clear_linear()
    w = jnp.asarray(weight, dtype=jnp.float32)

    def model(batch: Any) -> Any:
        return batch @ w.T

    jx = jnp.asarray(x, dtype=jnp.float32)
    y = jnp.argmax(model(jx), axis=1)
    data = [(jx[:BATCH], y[:BATCH]), (jx[BATCH:], y[BATCH:])]
    report = evaluate(model, data, IteratedSign(0.0, STEPS, step_size=2.0), [8.0], progress=False)
    _check_by_hand(report)
    assert report.forward_equivalents == sum(_by_hand(), PassCount(0, 0)).forward_equivalents


def test_the_evaluations_own_passes_on_a_registered_backend_are_counted_exactly():
    pytest.importorskip("array_api_strict")
    from test_backends import StrictLinear, _is_strict, open_strict, xp

    from signattack import register_backend
    from signattack.backends import unregister_backend

    weight, x = _clear_linear()
    model = StrictLinear(weight, np.zeros(weight.shape[0]))
    y = np.argmax(x @ weight.T, axis=1)
    halves = [slice(0, BATCH), slice(BATCH, None)]
    data = [(xp.asarray(x[part]), xp.asarray(y[part])) for part in halves]
    register_backend(_is_strict, open_strict, name="strict for the cost")
    try:
        report = evaluate(
            model, data, IteratedSign(0.0, STEPS, step_size=2.0), [8.0], progress=False
        )
    finally:
        unregister_backend("strict for the cost")
    _check_by_hand(report)


def test_a_counted_model_runs_only_inside_a_batch():
    from signattack.backends.batch import CountedModel, Passes

    weight, x = _clear_linear()
    counted = CountedModel(CountingLinear(weight), Passes())
    with pytest.raises(TypeError, match="runs only inside open_batch"):
        counted(x)
