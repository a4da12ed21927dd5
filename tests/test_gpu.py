"""On a CUDA device: the attacks, the fast path and the evaluation, against the CPU.

Skipped where there is no CUDA device; ``benchmarks/gpu.sh`` runs them with ``-m gpu``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import correct

from signattack import APGD, IteratedSign
from signattack.evaluation import evaluate
from signattack.fast import accelerate

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_attacks_stay_on_the_device_and_agree_with_the_cpu(digits, digits_model):
    model = copy.deepcopy(digits_model).eval()
    x, y = digits.x_test, digits.y_test
    for attack in (IteratedSign(16, 10), APGD(16, 10, seed=0)):
        on_cpu = attack(model, x, y)
        result = attack.run(model.cuda(), x.cuda(), y.cuda())
        model.cpu()
        assert result.x_adv.device.type == result.losses.device.type == "cuda"
        assert float((result.x_adv.cpu() - x).abs().max()) <= 16
        # Different kernels: the robust counts agree within a few of 449 digits.
        assert abs(correct(model, result.x_adv.cpu(), y) - correct(model, on_cpu, y)) <= 4


def test_fast_paths_keep_the_strength_on_the_device(digits, digits_model):
    model = copy.deepcopy(digits_model).eval().cuda()
    x, y = digits.x_test.cuda(), digits.y_test.cuda()
    attack = IteratedSign(16, 10)
    reference = correct(model, attack(model, x, y), y)
    for options in (
        {"compile": False},
        {"compile": True},
        {"compile": True, "mode": "reduce-overhead"},
    ):
        fast = accelerate(copy.deepcopy(model), **options)
        assert abs(correct(model, attack(fast, x, y), y) - reference) <= 2, options  # 0.5 pt


def test_evaluate_on_the_device_matches_the_cpu(digits, digits_model):
    model = copy.deepcopy(digits_model).eval()
    batches = [(digits.x_test[i : i + 128], digits.y_test[i : i + 128]) for i in range(0, 449, 128)]
    on_cpu = evaluate(model, batches, IteratedSign(0, 5), [8.0, 16.0], progress=False)
    on_gpu = evaluate(
        model.cuda(),
        [(x.cuda(), y.cuda()) for x, y in batches],
        IteratedSign(0, 5),
        [8.0, 16.0],
        progress=False,
    )
    assert on_gpu.clean_correct == on_cpu.clean_correct
    for eps in (8.0, 16.0):
        assert abs(sum(on_gpu.robust_correct[eps]) - sum(on_cpu.robust_correct[eps])) <= 4
