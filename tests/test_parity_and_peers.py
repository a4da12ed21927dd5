"""Reference checks: NumPy backend against torch backend, and against torchattacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import correct, linear_pair
from hypothesis import given
from hypothesis import strategies as st

from signattack import FGSM, IteratedSign
from signattack.digits import accuracy


@given(
    eps=st.floats(0, 40),
    steps=st.integers(1, 6),
    targeted=st.booleans(),
    random_start=st.booleans(),
    loss=st.sampled_from(["ce", "margin"]),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([0.003, 0.01, 0.03]),
)
def test_numpy_backend_matches_torch_backend(eps, steps, targeted, random_start, loss, seed, scale):
    numpy_model, torch_model = linear_pair(4, 15, scale=scale, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(8, 3, 5))
    y = rng.integers(0, 4, size=8)
    attack = IteratedSign(
        eps, steps, targeted=targeted, random_start=random_start, loss=loss, seed=seed
    )
    from_numpy = attack.run(numpy_model, x, y)
    from_torch = attack.run(torch_model, torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(from_torch.x_adv.numpy(), from_numpy.x_adv, rtol=0, atol=1e-9)
    np.testing.assert_allclose(from_torch.losses.numpy(), from_numpy.losses, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(from_torch.predictions.numpy(), from_numpy.predictions)
    np.testing.assert_array_equal(from_torch.success.numpy(), from_numpy.success)


def test_numpy_backend_keeps_uint8_images_integral():
    numpy_model, _ = linear_pair(3, 12)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 12)).astype(np.uint8)
    y = rng.integers(0, 3, size=5)
    x_adv = IteratedSign(6.5, 4)(numpy_model, x, y)
    assert x_adv.dtype == np.uint8
    assert np.abs(x_adv.astype(int) - x.astype(int)).max() <= 6


class _UnitInterval(torch.nn.Module):
    """The digits model behind the [0, 1] input convention that torchattacks assumes."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * 255)


def _per_sample_cross_entropy(logits, labels):
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("eps_pixels", [4, 16, 32])
def test_matches_torchattacks_on_a_real_digits_model(digits, digits_model, eps_pixels):
    torchattacks = pytest.importorskip("torchattacks")
    model = _UnitInterval(digits_model).eval()
    x, y = digits.x_test / 255, digits.y_test
    eps, alpha = eps_pixels / 255, eps_pixels / 255 / 4
    theirs = {
        "bim": torchattacks.BIM(model, eps=eps, alpha=alpha, steps=10)(x, y),
        "pgd": torchattacks.PGD(model, eps=eps, alpha=alpha, steps=10, random_start=False)(x, y),
        "fgsm": torchattacks.FGSM(model, eps=eps)(x, y),
    }
    # With torch's own cross-entropy, the same algorithm gives the same batch, up to
    # round-off in the limits (torchattacks clamps x - eps and x + eps separately).
    ce = _per_sample_cross_entropy
    ours = {
        "bim": IteratedSign(eps, 10, step_size=alpha, bounds=(0, 1), loss=ce)(model, x, y),
        "fgsm": FGSM(eps, bounds=(0, 1), loss=ce)(model, x, y),
    }
    ours["pgd"] = ours["bim"]
    for name, expected in theirs.items():
        torch.testing.assert_close(ours[name], expected, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(ours["bim"], x), "the attack did not move"

    # The default cross-entropy has a more accurate backward (see the next test): gradient
    # entries near zero may round to the other sign, so a few pixels differ. It is no weaker.
    default = IteratedSign(eps, 10, step_size=alpha, bounds=(0, 1))(model, x, y)
    same = (default - theirs["bim"]).abs() <= 1e-6
    assert float(same.float().mean()) > 0.99
    assert correct(model, default, y) <= correct(model, theirs["bim"], y) + 1


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("eps", [4, 16, 32])
def test_matches_foolbox_bit_for_bit_in_pixel_units(digits, digits_model, eps):
    foolbox = pytest.importorskip("foolbox")
    model = digits_model.eval()
    x, y = digits.x_test, digits.y_test
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 255))
    bim = foolbox.attacks.LinfBasicIterativeAttack(
        abs_stepsize=eps / 4, steps=10, random_start=False
    )
    _, theirs, _ = bim(fmodel, x, y, epsilons=eps)
    ce = _per_sample_cross_entropy
    ours = IteratedSign(eps, 10, step_size=eps / 4, loss=ce)(model, x, y)
    assert torch.equal(ours, theirs)
    _, theirs_fgsm, _ = foolbox.attacks.FGSM(random_start=False)(fmodel, x, y, epsilons=eps)
    assert torch.equal(FGSM(eps, loss=ce)(model, x, y), theirs_fgsm)
    assert accuracy(model, ours, y) < accuracy(model, x, y)


def test_confident_samples_keep_the_true_class_term_of_the_gradient():
    """Two classes with a margin of 40: p_y rounds to 1, yet the step follows w_o - w_y."""
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.2, 0.1, 0.0, -0.1], [0.1, 0.2, 0.1, 0.0]]))
        model.bias.copy_(torch.tensor([40.0, 0.0]))
    x = torch.full((1, 4), 100.0)
    y = torch.tensor([0])
    with torch.no_grad():
        assert float(torch.softmax(model(x), 1)[0, 0]) == 1.0
    x_adv = FGSM(1)(model, x, y)
    expected = x + torch.sign(model.weight[1] - model.weight[0]).detach()
    assert torch.equal(x_adv, expected)
    naive = FGSM(1, loss=_per_sample_cross_entropy)(model, x, y)
    assert not torch.equal(naive, expected), "torch's own gradient was expected to lose the term"
