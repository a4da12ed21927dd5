"""On real images: a CNN trained on scikit-learn's handwritten digits."""

from __future__ import annotations

import pytest
import torch

from signattack import FGSM, IteratedSign
from signattack.digits import accuracy

pytestmark = pytest.mark.slow


def test_the_model_learned_the_digits(digits, digits_model):
    assert accuracy(digits_model, digits.x_test, digits.y_test) > 0.95


def test_iterated_attack_cuts_accuracy_hard_and_beats_noise(digits, digits_model):
    x, y = digits.x_test, digits.y_test
    clean = accuracy(digits_model, x, y)
    attacked = accuracy(digits_model, IteratedSign(48, 10)(digits_model, x, y), y)
    generator = torch.Generator().manual_seed(0)
    noise = (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1) * 48.0
    noisy = accuracy(digits_model, (x + noise).clamp(0, 255), y)
    assert attacked < 0.15 < clean - 0.75
    assert noisy > clean - 0.15, "random signs of the same size should barely hurt"


def test_more_steps_and_larger_eps_are_stronger(digits, digits_model):
    x, y = digits.x_test, digits.y_test
    fgsm = accuracy(digits_model, FGSM(24)(digits_model, x, y), y)
    iterated = accuracy(digits_model, IteratedSign(24, 10)(digits_model, x, y), y)
    larger = accuracy(digits_model, IteratedSign(48, 10)(digits_model, x, y), y)
    assert iterated <= fgsm
    assert larger < iterated


def test_targeted_attack_reaches_its_targets(digits, digits_model):
    x, y = digits.x_test, digits.y_test
    targets = (y + 1) % 10
    result = IteratedSign(64, 20, targeted=True).run(digits_model, x, targets)
    assert float(result.success.float().mean()) > 0.8
    assert float(result.losses[-1].mean()) < float(result.losses[0].mean())


def test_uint8_digits_stay_uint8_and_the_attack_still_works(digits, digits_model):
    x = digits.x_test.round().to(torch.uint8)
    y = digits.y_test
    x_adv = IteratedSign(48, 10)(digits_model, x, y)
    assert x_adv.dtype == torch.uint8
    assert int((x_adv.int() - x.int()).abs().max()) <= 48
    assert accuracy(digits_model, x_adv.float(), y) < 0.2


def test_loss_trace_rises_from_the_clean_loss(digits, digits_model):
    x, y = digits.x_test[:100], digits.y_test[:100]
    result = IteratedSign(16, 5).run(digits_model, x, y)
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(digits_model(x), y, reduction="none")
    torch.testing.assert_close(result.losses[0], clean)
    assert float(result.losses[-1].mean()) > 2 * float(result.losses[0].mean())
