"""The opt-in fast path: same model, lower precision, attack strength kept."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import correct

from signattack import IteratedSign
from signattack.fast import Accelerated, accelerate
from signattack.models import AllCNN

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("eps", [16, 32])
def test_low_precision_keeps_attack_strength_within_half_a_point(
    digits, digits_model, precision, eps
):
    x, y = digits.x_test, digits.y_test
    attack = IteratedSign(eps, 10)
    reference = correct(digits_model, attack(digits_model, x, y), y)
    fast = accelerate(copy.deepcopy(digits_model), precision=precision, compile=False)
    robust = correct(digits_model, attack(fast, x, y), y)
    assert abs(robust - reference) <= 0.005 * len(y)  # half a point, in samples


def test_channels_last_and_autocast_give_float32_logits_close_to_eager():
    torch.manual_seed(0)
    model = AllCNN(channels=(16, 32)).eval()
    x = torch.rand(4, 3, 32, 32) * 255
    with torch.no_grad():
        expected = model(x)
        fast = accelerate(copy.deepcopy(model), compile=False)
        got = fast(x)
        exact = accelerate(copy.deepcopy(model), precision="fp32", compile=False)(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(exact, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got, expected, rtol=0.1, atol=0.1)


def test_attacking_an_accelerated_model_restores_its_modes():
    model = AllCNN(channels=(8, 16)).train()
    fast = accelerate(model, compile=False)
    x, y = torch.rand(2, 3, 32, 32) * 255, torch.tensor([0, 1])
    x_adv = IteratedSign(8, 2)(fast, x, y)
    assert all(module.training for module in model.modules())
    assert ((x_adv - x).abs() <= 8).all()


def test_compiled_model_gives_the_same_attack(digits, digits_model):
    x, y = digits.x_test[:64], digits.y_test[:64]
    attack = IteratedSign(16, 3)
    compiled = accelerate(copy.deepcopy(digits_model), precision="fp32", channels_last=False)
    eager = attack(digits_model, x, y)
    fast = attack(compiled, x, y)
    assert float((fast == eager).float().mean()) > 0.99


def test_bad_arguments():
    with pytest.raises(ValueError, match="precision must be one of"):
        accelerate(torch.nn.Linear(2, 2), precision="int8")
    with pytest.raises(TypeError, match="model must be a torch"):
        accelerate(lambda x: x)
    assert isinstance(accelerate(torch.nn.Linear(2, 2), compile=False), Accelerated)
