"""PyTorch rules: no side effects on the model or the input, no graphs, devices, modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from signattack import FGSM, IteratedSign


class _Scale(nn.Module):
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels / 255


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        _Scale(),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 5, 5, generator=generator) * 255
    y = torch.randint(0, 3, (6,), generator=generator)
    return x, y


def _snapshot(model: nn.Module):
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _assert_same(before, after):
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key


@pytest.mark.parametrize("mode", ["eval", "train", "unchanged"])
@pytest.mark.parametrize("model_training", [True, False])
def test_model_is_left_exactly_as_found(batch, mode, model_training):
    x, y = batch
    model = _net().train(model_training)
    model[1].weight.requires_grad_(False)  # a frozen parameter
    model[6].weight.grad = torch.ones_like(model[6].weight)  # an existing gradient
    before = _snapshot(model)
    IteratedSign(8, 3, model_mode=mode, random_start=True, seed=0).run(model, x, y)
    _assert_same(before, _snapshot(model))


def test_model_is_restored_when_the_attack_raises(batch):
    x, _ = batch
    model = _net().train()
    before = _snapshot(model)
    with pytest.raises(ValueError, match="labels < 3"):
        IteratedSign(8, 3)(model, x, torch.full((6,), 7))
    _assert_same(before, _snapshot(model))


def test_attack_runs_the_model_in_eval_mode_by_default(batch):
    x, y = batch
    model = _net().train()
    attack = IteratedSign(8, 3)
    assert torch.equal(attack(model, x, y), attack(model, x, y)), "dropout was active"
    with torch.no_grad():
        assert not torch.equal(model(x), model(x)), "the model's train mode was not restored"


def test_input_is_not_mutated_and_no_graph_escapes(batch):
    x, y = batch
    x = x.clone().requires_grad_(True)
    before = x.detach().clone()
    result = IteratedSign(8, 3).run(_net(), x, y)
    assert torch.equal(x.detach(), before)
    assert x.grad is None
    for tensor in (result.x_adv, result.losses, result.predictions, result.success):
        assert not tensor.requires_grad
        assert tensor.grad_fn is None


def test_works_under_no_grad_and_inference_mode(batch):
    x, y = batch
    model = _net()
    attack = IteratedSign(8, 3)
    expected = attack(model, x, y)
    with torch.no_grad():
        assert torch.equal(attack(model, x, y), expected)
    with torch.inference_mode():
        inference_x = x.clone()
        assert torch.equal(attack(model, inference_x, y), expected)


def test_plain_callable_and_custom_loss(batch):
    x, y = batch
    model = _net().eval()
    expected = IteratedSign(8, 3)(model, x, y)

    def per_sample_ce(logits, labels):
        return nn.functional.cross_entropy(logits, labels, reduction="none")

    custom = IteratedSign(8, 3, loss=per_sample_ce)(model, x, y)
    # Round-off differs between the two cross-entropies, so a gradient entry near zero may
    # take the other sign; almost every pixel must agree.
    assert float((custom == expected).float().mean()) > 0.99
    assert torch.equal(IteratedSign(8, 3)(lambda t: model(t), x, y), expected)


def test_labels_on_another_dtype_are_accepted(batch):
    x, y = batch
    model = _net()
    assert torch.equal(FGSM(8)(model, x, y.to(torch.int32)), FGSM(8)(model, x, y))


def test_model_that_detaches_its_input_is_an_error(batch):
    x, y = batch
    model = _net()
    with pytest.raises(ValueError, match="does not depend on x"):
        FGSM(8)(lambda t: model(t.detach()), x, y)


def test_model_on_another_device_is_an_error(batch):
    x, y = batch
    with pytest.raises(ValueError, match=r"same device.*meta"):
        FGSM(8)(_net().to("meta"), x, y)


def test_loss_that_is_not_per_sample_is_an_error(batch):
    x, y = batch
    with pytest.raises(ValueError, match=r"per-sample losses of shape \(6,\)"):
        FGSM(8, loss=lambda logits, labels: nn.functional.cross_entropy(logits, labels))(
            _net(), x, y
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(batch):
    x, y = batch
    model = _net().eval()
    cpu = IteratedSign(8, 3).run(model, x, y)
    gpu = IteratedSign(8, 3).run(model.cuda(), x.cuda(), y.cuda())
    assert gpu.x_adv.device.type == "cuda"
    assert gpu.losses.device.type == "cuda"
    assert (gpu.x_adv.cpu() - cpu.x_adv).abs().max() <= 8
    assert ((gpu.x_adv.cpu() - x).abs() <= 8).all()


_SYNCING = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "nonzero")


def _count_syncs(monkeypatch, run):
    """Call ``run`` while counting the tensor methods that copy a value to the host."""
    counts = {"calls": 0}
    for name in _SYNCING:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            counts["calls"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    run()
    monkeypatch.undo()
    return counts["calls"]


@pytest.mark.parametrize("random_start", [False, True])
def test_no_host_synchronisation_inside_the_attack_loop(batch, monkeypatch, random_start):
    """Validation syncs once at the boundary; the number of syncs must not grow with steps."""
    x, y = batch
    model = _net()
    syncs = {
        steps: _count_syncs(
            monkeypatch,
            lambda steps=steps: IteratedSign(8, steps, random_start=random_start, seed=0)(
                model, x, y
            ),
        )
        for steps in (1, 5)
    }
    assert syncs[1] == syncs[5]
    assert syncs[1] > 0, "the counter saw nothing: the check would pass vacuously"


def test_early_stop_run_on_tensors_matches_the_numpy_backend():
    from conftest import linear_pair

    numpy_model, torch_model = linear_pair(3, 10, scale=0.05, seed=2)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(12, 10, generator=generator, dtype=torch.float64) * 255
    y = torch.randint(0, 3, (12,), generator=generator)
    attack = IteratedSign(10, 6, early_stop=True)
    from_torch = attack.run(torch_model, x, y)
    from_numpy = attack.run(numpy_model, x.numpy(), y.numpy())
    torch.testing.assert_close(from_torch.x_adv.numpy(), from_numpy.x_adv)
    torch.testing.assert_close(from_torch.losses.numpy(), from_numpy.losses)
    assert from_torch.losses.shape == (7, 12)
