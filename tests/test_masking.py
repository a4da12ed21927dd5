"""Evaluations that gradient masking cannot fool: straight-through gradients, EOT, Square in
the standard suite, the rand suite for randomized models, and the report's warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import correct

from signattack import APGD, FGSM, IteratedSign, Square, straight_through
from signattack.evaluation import (
    AttackSuite,
    evaluate,
    gradient_attacks,
    rand_attacks,
    standard_attacks,
)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """8 levels over [0, 255]: a zero gradient almost everywhere."""
    return torch.round(x / 255 * 7) / 7 * 255


class _Step(torch.nn.Module):
    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


def test_straight_through_is_fn_forward_and_the_identity_or_a_stand_in_backward():
    x = (torch.rand(3, 4, generator=torch.Generator().manual_seed(0)) * 255).requires_grad_()
    through = straight_through(_quantize)(x)
    assert torch.equal(through, _quantize(x.detach())), "the forward pass is exactly fn(x)"
    (grad,) = torch.autograd.grad(through.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))
    (masked,) = torch.autograd.grad(_quantize(x).sum(), x)
    assert torch.equal(masked, torch.zeros_like(x)), "the quantizer itself masks the gradient"
    squared = straight_through(_quantize, lambda z: z**2 / 2)(x)
    (stand_in,) = torch.autograd.grad(squared.sum(), x)
    torch.testing.assert_close(stand_in, x.detach())
    with pytest.raises(TypeError, match="fn must be callable"):
        straight_through(3)
    with pytest.raises(ValueError, match="must keep the input's shape"):
        straight_through(lambda z: z[:, :2])(x)


def test_straight_through_on_jax():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def quantize(z):
        return jnp.round(z / 255 * 7) / 7 * 255

    x = jnp.asarray([10.0, 100.0, 200.0])
    np.testing.assert_array_equal(np.asarray(straight_through(quantize)(x)), quantize(x))
    grad = jax.jit(jax.grad(lambda z: straight_through(quantize)(z).sum()))(x)
    np.testing.assert_array_equal(np.asarray(grad), [1.0, 1.0, 1.0])
    stand_in = jax.grad(lambda z: straight_through(quantize, lambda u: u**2 / 2)(z).sum())(x)
    np.testing.assert_allclose(np.asarray(stand_in), np.asarray(x))


def test_straight_through_applies_fn_to_other_arrays():
    values = np.array([10.0, 100.0])
    np.testing.assert_array_equal(straight_through(lambda z: z + 1)(values), values + 1)


@pytest.mark.slow
def test_apgd_through_a_straight_through_quantizer_breaks_what_the_quantizer_hides(
    digits, digits_model
):
    x, y = digits.x_test[:150], digits.y_test[:150]
    defended = torch.nn.Sequential(_Step(_quantize), digits_model).eval()
    through = torch.nn.Sequential(_Step(straight_through(_quantize)), digits_model).eval()
    attack = APGD(32.0, 50, seed=0)
    masked = int((~attack.run(defended, x, y).success).sum())
    result = attack.run(through, x, y)
    # The attack runs on the defended model: its points are checked there.
    assert correct(defended, result.x_adv, y) == int((~result.success).sum())
    unmasked = int((~result.success).sum())
    plain = int((~attack.run(digits_model, x, y).success).sum())
    assert masked >= correct(defended, x, y) - 3, "the quantizer masks the gradient"
    assert unmasked < masked - 50
    assert unmasked <= plain + 15, "as strong as APGD on the network without the quantizer"


class _Noisy(torch.nn.Module):
    """A randomized linear model: every pass adds a term that hardly changes the logits but
    whose gradient, of random sign per pass, drowns the true one."""

    def __init__(self, classes: int = 4, features: int = 32) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(classes, features, generator=generator) / 50)
        self.register_buffer("noise", torch.randn(classes, features, generator=generator) / 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        signs = torch.randint(0, 2, (x.shape[0], self.weight.shape[0])) * 2 - 1
        return flat @ self.weight.T + signs * torch.sin(1000 * flat @ self.noise.T) / 1000

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def _noisy_problem():
    model = _Noisy()
    x = torch.rand(200, 32, generator=torch.Generator().manual_seed(1)) * 155 + 50
    return model, x, model.clean(x).argmax(1)


@pytest.mark.parametrize("attack", [IteratedSign(6.0, 10), APGD(6.0, 10, seed=0), FGSM(6.0)])
def test_eot_finds_what_one_pass_per_gradient_misses_on_a_randomized_model(attack):
    model, x, y = _noisy_problem()
    robust = {}
    for eot in (1, 20):
        torch.manual_seed(2)  # the model's randomness is the model's: seed it to reproduce
        result = type(attack)(**{**_settings(attack), "eot": eot}).run(model, x, y)
        robust[eot] = int((model.clean(result.x_adv).argmax(1) == y).sum())
        assert float((result.x_adv - x).abs().max()) <= 6.0
    assert robust[20] < robust[1] - 10, robust


def _settings(attack):
    import dataclasses

    return {f.name: getattr(attack, f.name) for f in dataclasses.fields(attack)}


def test_eot_is_checked():
    for make in (lambda: IteratedSign(4.0, eot=0), lambda: APGD(4.0, eot=0)):
        with pytest.raises(ValueError, match="eot must be >= 1"):
            make()
    with pytest.raises(TypeError, match="eot must be an int"):
        FGSM(4.0, eot=2.5)


def test_the_presets_are_autoattacks_with_their_published_settings():
    standard = standard_attacks()
    assert isinstance(standard, AttackSuite)
    assert standard.name == "standard"
    assert [type(a).__name__ for a in standard] == ["APGD", "APGDT", "FABT", "Square"]
    assert standard[0].steps == standard[1].steps == standard[2].steps == 100
    assert standard[1].target_classes == standard[2].target_classes == 9
    assert standard[2].restarts == 1
    assert (standard[2].alpha_max, standard[2].eta, standard[2].beta) == (0.1, 1.05, 0.9)
    assert standard[3].queries == 5000
    assert standard.randomized is not None
    assert [(a.loss, a.eot) for a in standard.randomized] == [("ce", 20), ("dlr", 20)]
    assert rand_attacks().name == "rand"
    assert [type(a).__name__ for a in gradient_attacks()] == ["APGD", "APGDT"]


def test_the_rand_suite_runs_when_the_evaluation_finds_the_model_randomized():
    model, x, y = _noisy_problem()
    data = [(x[:100], y[:100])]
    suite = standard_attacks(5, queries=10, seed=0)
    torch.manual_seed(0)
    report = evaluate(model, data, suite, [6.0])
    assert "eot=20" in report.attack, report.attack
    assert "Square" not in report.attack
    deterministic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, 4)).eval()
    with torch.no_grad():
        deterministic[1].weight.copy_(model.weight)
        deterministic[1].bias.zero_()
    report = evaluate(deterministic, data, suite, [6.0])
    assert "Square" in report.attack


def test_the_report_warns_when_square_breaks_what_the_gradient_attacks_left(digits, digits_model):
    defended = torch.nn.Sequential(_Step(_quantize), digits_model).eval()
    data = [(digits.x_test[:60], digits.y_test[:60])]
    suite = AttackSuite("quick", [APGD(0.0, 10, seed=0), Square(0.0, 100, seed=0)])
    report = evaluate(defended, data, suite, [32.0])
    square = next(name for name in report.broken_by[32.0] if name.startswith("Square"))
    assert report.broken_by[32.0][square] > 0.002 * report.samples
    masking = [w for w in report.warnings if "masks its gradients" in w]
    assert len(masking) == 1
    assert "straight_through" in masking[0]
    assert "eot=N" in masking[0]
    clean = evaluate(digits_model, data, suite, [2.0])
    assert not [w for w in clean.warnings if "masks its gradients" in w]


def test_the_old_name_of_the_final_evaluation_is_deprecated():
    from signattack.core.rules import Evaluated

    with pytest.warns(DeprecationWarning, match="use signattack.attacks.Evaluated"):
        from signattack.attacks.loop import Final
    assert Final is Evaluated


class _CoinToss(torch.nn.Module):
    """A linear model whose every pass adds large noise to the logits: one pass is a coin
    toss near the boundary, the mean of many passes the model's expected answer."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.register_buffer("weight", torch.randn(4, 16, generator=generator) / 100)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clean = x.flatten(1) @ self.weight.T
        return clean + 3.0 * torch.randn(clean.shape)

    def expected(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def test_with_eot_a_randomized_model_is_judged_by_its_mean_logits():
    model = _CoinToss()
    x = torch.rand(300, 16, generator=torch.Generator().manual_seed(4)) * 255
    y = model.expected(x).argmax(1)
    ordered = model.expected(x).sort(dim=1).values
    clear = ordered[:, -1] - ordered[:, -2] > 2.0  # clear of the noise of a 200-pass mean
    torch.manual_seed(0)
    one = FGSM(0.0).run(model, x, y)  # eps 0: nothing moves, only the judging is random
    many = FGSM(0.0, eot=200).run(model, x, y)
    assert int(one.success.sum()) > 30, "a single pass misjudges correctly classified samples"
    assert not bool(many.success[clear].any()), "the mean of 200 passes judges them correct"
    assert int(clear.sum()) > 100
