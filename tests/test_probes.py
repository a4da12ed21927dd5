"""Input- and weight-space probes: closed forms, invariances, restoration, warnings, plots."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import linear_pair
from torch import nn

from signattack import probes
from signattack.probes import GradientMaskingWarning


def _problem(classes=2, seed=0):
    numpy_model, torch_model = linear_pair(classes, 10, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(60, 190, size=(5, 10))  # far enough from the box for small radii
    y = rng.integers(0, classes, size=5)
    return numpy_model, torch_model, x, y


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_input_gradient_of_softmax_regression(backend):
    numpy_model, torch_model, x, y = _problem(classes=4)
    w, b = numpy_model.weight, numpy_model.bias
    expected = (_softmax(x @ w.T + b) - np.eye(4)[y]) @ w
    if backend == "numpy":
        grad = probes.input_gradient(numpy_model, x, y)
    else:
        grad = probes.input_gradient(torch_model, torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)


def test_loss_along_signed_gradient_is_linear_for_the_margin_of_a_linear_model():
    numpy_model, _, x, y = _problem()
    radii = [0.0, 1.0, 5.0, 20.0]
    losses = probes.loss_along(numpy_model, x, y, "signed_gradient", radii, loss="margin")
    w = numpy_model.weight
    slope = np.abs(w[1 - y] - w[y]).sum(axis=1)
    logits = numpy_model(x)
    clean = logits[np.arange(5), 1 - y] - logits[np.arange(5), y]
    np.testing.assert_allclose(losses, clean + np.outer(radii, slope), rtol=1e-10, atol=1e-10)


def test_loss_along_at_radius_zero_is_the_clean_loss_for_every_direction():
    _, torch_model, x, y = _problem(classes=3)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    clean = nn.functional.cross_entropy(torch_model(x), y, reduction="none").detach()
    for kind in ("signed_gradient", "rademacher", "gaussian"):
        losses = probes.loss_along(torch_model, x, y, kind, [0.0, 4.0], seed=1)
        torch.testing.assert_close(losses[0], clean)
    explicit = probes.loss_along(torch_model, x, y, torch.ones_like(x), [0.0])
    torch.testing.assert_close(explicit[0], clean)


def test_directions_have_unit_linf_norm_and_random_ones_are_seeded():
    _, torch_model, x, y = _problem()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    for kind in ("signed_gradient", "rademacher", "gaussian"):
        d = probes.direction(torch_model, x, y, kind, seed=3)
        torch.testing.assert_close(d.abs().amax(dim=1), torch.ones(5, dtype=d.dtype))
    first = probes.direction(torch_model, x, y, "gaussian", seed=3)
    assert torch.equal(first, probes.direction(torch_model, x, y, "gaussian", seed=3))
    assert not torch.equal(first, probes.direction(torch_model, x, y, "gaussian", seed=4))


def test_loss_surface_axes_agree_with_loss_along():
    _, torch_model, x, y = _problem(classes=3)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    surface = probes.loss_surface(torch_model, x, y, [0.0, 2.0, 4.0], [-3.0, 0.0, 3.0], seed=0)
    assert surface.losses.shape == (3, 3, 5)
    along = probes.loss_along(torch_model, x, y, "signed_gradient", [0.0, 2.0, 4.0])
    torch.testing.assert_close(surface.losses[:, 1], along)


def test_linearization_gap_is_zero_for_a_linear_loss_and_convexity_keeps_ce_above():
    numpy_model, _, x, y = _problem()
    margin_gap = probes.linearization_gap(numpy_model, x, y, 8.0, loss="margin")
    np.testing.assert_allclose(margin_gap.gap, 0.0, atol=1e-9)
    slope = np.abs(numpy_model.weight[1] - numpy_model.weight[0]).sum()
    np.testing.assert_allclose(margin_gap.predicted, 8.0 * slope, rtol=1e-12)
    ce_gap = probes.linearization_gap(numpy_model, x, y, 8.0)
    assert np.all(ce_gap.gap >= -1e-12), "CE is convex in the input of a linear model"
    assert np.all(ce_gap.actual > 0)


class _Rounding(nn.Module):
    """Quantises its input: the gradient through round() is zero everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.round(x / 64))


def _warned(record, text):
    return any(text in str(warning.message) for warning in record)


def test_check_gradients_warns_on_zero_gradients_probabilities_and_randomness():
    _, _torch_model, x, y = _problem()
    x, y = torch.from_numpy(x).float(), torch.from_numpy(y)
    with pytest.warns(GradientMaskingWarning) as record:
        report = probes.check_gradients(_Rounding(), x, y)
    assert _warned(record, "exactly zero")
    assert report.zero_fraction == 1.0
    assert report.zero_gradient_samples == 1.0

    softmax_model = nn.Sequential(nn.Linear(10, 2), nn.Softmax(dim=1))
    with pytest.warns(GradientMaskingWarning) as record:
        assert probes.check_gradients(softmax_model, x, y).probabilities
    assert _warned(record, "probabilities, not logits")

    noisy = nn.Sequential(nn.Dropout(0.5), nn.Linear(10, 2)).train()
    with pytest.warns(GradientMaskingWarning) as record:
        assert probes.check_gradients(noisy, x, y, model_mode="unchanged").stochastic
    assert _warned(record, "differ between two identical calls")
    assert noisy.training


def test_check_gradients_is_quiet_on_a_healthy_model():
    _, torch_model, x, y = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = probes.check_gradients(torch_model, torch.from_numpy(x), torch.from_numpy(y))
    assert report.problems() == []
    assert report.zero_gradient_samples == 0
    assert not report.stochastic


def _conv_net(batch_norm: bool) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8) if batch_norm else nn.Identity()]
    return nn.Sequential(*layers, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3)).double()


@pytest.fixture
def image_batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 6, 6, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 3, (16,), generator=generator)


def test_conv_before_batch_norm_is_scale_invariant_in_train_mode(image_batch):
    model = _conv_net(batch_norm=True)
    model[1].eps = 1e-12  # the only thing that breaks exact invariance
    scales = [0.25, 1.0, 4.0]
    probe = probes.scale_invariance(model, image_batch, [model[0].weight, model[0].bias], scales)
    np.testing.assert_allclose(probe.losses, probe.losses[1], rtol=1e-9)
    np.testing.assert_allclose(np.array(probe.grad_norms) * scales, probe.grad_norms[1], rtol=1e-6)


def test_scale_invariance_fails_without_batch_norm_or_in_eval_mode(image_batch):
    plain = _conv_net(batch_norm=False)
    probe = probes.scale_invariance(plain, image_batch, [plain[0].weight], [0.5, 1.0, 2.0])
    assert max(probe.losses) - min(probe.losses) > 1e-3
    with_bn = _conv_net(batch_norm=True)
    evaluated = probes.scale_invariance(
        with_bn, image_batch, [with_bn[0].weight], [0.5, 1.0, 2.0], model_mode="eval"
    )
    assert max(evaluated.losses) - min(evaluated.losses) > 1e-3


def test_effective_learning_rate_is_lr_over_squared_norm():
    weight = nn.Parameter(torch.full((2, 2), 0.5))
    assert probes.effective_learning_rates([weight], 0.1) == pytest.approx([0.1 / 1.0])


def _state(model):
    return [t.detach().clone() for t in [*model.parameters(), *model.buffers()]]


def test_slices_restore_weights_bit_for_bit_and_start_at_the_model(image_batch):
    model = _conv_net(batch_norm=True).train()
    before = _state(model)
    one = probes.loss_slice_1d(model, image_batch, [-0.5, 0.0, 0.5])
    two = probes.loss_slice_2d(model, [image_batch, image_batch], [-0.5, 0.0], [0.0, 0.5])
    for a, b in zip(before, _state(model), strict=True):
        assert torch.equal(a, b)
    assert model.training
    model.eval()
    with torch.no_grad():
        clean = float(nn.functional.cross_entropy(model(image_batch[0]), image_batch[1]))
    assert one.losses[1] == pytest.approx(clean, rel=1e-12)
    assert two.losses[1][0] == pytest.approx(clean, rel=1e-12)
    assert len(two.losses) == 2
    assert len(two.losses[0]) == 2


def test_weights_are_restored_when_the_probe_is_interrupted(image_batch):
    model = _conv_net(batch_norm=True)
    before = _state(model)
    calls = []

    def failing_loss(logits, labels):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return nn.functional.cross_entropy(logits, labels)

    with pytest.raises(RuntimeError, match="interrupted"):
        probes.loss_slice_1d(model, image_batch, [0.0, 1.0, 2.0], loss=failing_loss)
    for a, b in zip(before, _state(model), strict=True):
        assert torch.equal(a, b)


def test_filter_normalized_direction_matches_filter_norms_and_skips_bn_and_bias():
    model = _conv_net(batch_norm=True)
    direction = probes.filter_normalized_direction(model, seed=0)
    conv_weight, conv_bias, bn_weight, bn_bias = direction[:4]
    torch.testing.assert_close(
        conv_weight.flatten(1).norm(dim=1), model[0].weight.detach().flatten(1).norm(dim=1)
    )
    for zero in (conv_bias, bn_weight, bn_bias):
        assert not zero.any()
    kept = probes.filter_normalized_direction(model, skip_bn_and_bias=False, seed=0)
    torch.testing.assert_close(kept[1].norm(), model[0].bias.detach().norm())


def test_probe_arguments_are_checked(image_batch):
    _, torch_model, x, y = _problem()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    with pytest.raises(ValueError, match="along must be one of"):
        probes.loss_along(torch_model, x, y, "sideways", [1.0])
    with pytest.raises(ValueError, match="along must have x's shape"):
        probes.loss_along(torch_model, x, y, x[:2], [1.0])
    with pytest.raises(ValueError, match="radii must hold at least one radius"):
        probes.loss_along(torch_model, x, y, "rademacher", [])
    model = _conv_net(batch_norm=True)
    with pytest.raises(ValueError, match="scales must be positive"):
        probes.scale_invariance(model, image_batch, [model[0].weight], [0.0, 1.0])
    with pytest.raises(ValueError, match="direction must hold one tensor per model parameter"):
        probes.loss_slice_1d(model, image_batch, [0.0], direction=[torch.zeros(1)])


def test_plots_return_figures_and_write_png(tmp_path, image_batch):
    from signattack import IteratedSign, plots

    _, torch_model, x, y = _problem(classes=3)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    result = IteratedSign(8, 4).run(torch_model, x, y)
    radii = [0.0, 4.0, 8.0]
    along = {
        k: probes.loss_along(torch_model, x, y, k, radii, seed=0)
        for k in ("signed_gradient", "gaussian")
    }
    model = _conv_net(batch_norm=True)
    figures = {
        "trace": plots.plot_loss_trace(result.losses, path=tmp_path / "trace.png"),
        "along": plots.plot_loss_along(radii, along, path=tmp_path / "along.png"),
        "slice1": plots.plot_loss_slice(
            probes.loss_slice_1d(model, image_batch, [-1.0, 0.0, 1.0]), path=tmp_path / "s1.png"
        ),
        "slice2": plots.plot_loss_slice(
            probes.loss_slice_2d(model, image_batch, [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]),
            path=tmp_path / "s2.png",
        ),
        "surface": plots.plot_loss_surface(
            probes.loss_surface(torch_model, x, y, radii, radii), path=tmp_path / "surface.png"
        ),
        "maps": plots.plot_gradient_maps(
            image_batch[0][:4] * 255,
            probes.input_gradient(model, image_batch[0][:4] * 255, image_batch[1][:4]),
            titles=["a", "b", "c", "d"],
            path=tmp_path / "maps.png",
        ),
    }
    for name, figure in figures.items():
        assert figure.axes, name
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes().startswith(b"\x89PNG")
    assert len(list(tmp_path.glob("*.png"))) == 6
