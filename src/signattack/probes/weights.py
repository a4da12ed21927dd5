"""Weight-space probes (PyTorch): scale invariance, effective learning rate, loss slices.

Every probe that changes weights restores them bit for bit afterwards, together with the
buffers and the train/eval flags, also when it is interrupted by an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from signattack._lazy import missing_torch

try:
    import torch
    from torch import nn
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise missing_torch("signattack.probes.weights", error) from error

from signattack.backends._torch_state import kept_modes, kept_values
from signattack.core.threat import MODEL_MODES, ModelMode
from signattack.core.validation import check_choice, check_real
from signattack.params import param_groups

__all__ = [
    "LossSlice",
    "ScaleProbe",
    "effective_learning_rates",
    "filter_normalized_direction",
    "loss_slice_1d",
    "loss_slice_2d",
    "restored",
    "scale_invariance",
]

Batches = tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]]
"""One ``(x, y)`` batch, or any iterable of them (a ``DataLoader``)."""

TorchLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels)


@contextmanager
def restored(model: nn.Module) -> Iterator[nn.Module]:
    """Give back ``model``'s parameters, buffers and train/eval flags exactly on exit."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    with kept_modes(model), kept_values([*model.parameters(), *model.buffers()]):
        yield model


def _as_batches(data: Batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [(data[0], data[1])]
    batches = [(x, y) for x, y in data]
    if not batches:
        raise ValueError("data must hold at least one (x, y) batch, got none")
    return batches


def _mean_loss(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], loss: TorchLoss
) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            total += float(loss(model(x), y)) * len(y)
            count += len(y)
    return total / count


def _set_mode(model: nn.Module, model_mode: ModelMode) -> None:
    check_choice("model_mode", model_mode, MODEL_MODES)
    if model_mode != "unchanged":
        model.train(model_mode == "train")


@dataclass(frozen=True)
class ScaleProbe:
    """The loss and gradient norm under ``w -> scale * w`` for chosen parameters.

    Attributes:
        scales: The factors ``lambda``.
        losses: Mean loss at each scale.
        grad_norms: ``|grad_w L|`` over the scaled parameters at each scale. For a
            scale-invariant loss it falls as ``1 / lambda``.
    """

    scales: tuple[float, ...]
    losses: tuple[float, ...]
    grad_norms: tuple[float, ...]


def scale_invariance(
    model: nn.Module,
    data: Batches,
    parameters: Sequence[nn.Parameter],
    scales: Sequence[float],
    *,
    loss: TorchLoss = _mean_cross_entropy,
    model_mode: ModelMode = "train",
) -> ScaleProbe:
    """Evaluate the loss with ``parameters`` scaled by each factor.

    A convolution or linear layer followed by batch-norm *in train mode* computes the same
    function for every positive scale of its weight (batch-norm divides the scale out), so
    the loss is flat in ``lambda`` while the gradient shrinks as ``1 / lambda``: the
    effective learning rate of such a weight is ``lr / |w|^2``. In eval mode, with running
    statistics, the invariance is gone. Running statistics updated by train-mode passes are
    restored afterwards, like the weights.

    Args:
        model: The network.
        data: One ``(x, y)`` batch or an iterable of them.
        parameters: The parameters to scale together.
        scales: Positive factors.
        loss: ``loss(logits, labels)``, a scalar; mean cross-entropy by default.
        model_mode: ``"train"`` (default), ``"eval"`` or ``"unchanged"``.

    Raises:
        ValueError: A scale is not positive, or ``parameters`` is empty.
    """
    scales = tuple(check_real("scales", s, minimum=0.0) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales!r}")
    parameters = list(parameters)
    if not parameters:
        raise ValueError("parameters must name at least one parameter to scale")
    batches = _as_batches(data)
    count = sum(len(y) for _, y in batches)
    losses, norms = [], []
    with restored(model):
        _set_mode(model, model_mode)
        originals = [p.detach().clone() for p in parameters]
        for scale in scales:
            with torch.no_grad():
                for parameter, original in zip(parameters, originals, strict=True):
                    parameter.copy_(scale * original)
            mean_loss = 0.0
            mean_grad = [torch.zeros_like(p, dtype=torch.float64) for p in parameters]
            for x, y in batches:
                with torch.enable_grad():
                    value = loss(model(x), y)
                grads = torch.autograd.grad(value, parameters, allow_unused=True)
                share = len(y) / count
                mean_loss += float(value.detach()) * share
                for total, grad in zip(mean_grad, grads, strict=True):
                    if grad is not None:
                        total.add_(grad.double(), alpha=share)
            losses.append(mean_loss)
            norms.append(float(torch.stack([g.pow(2).sum() for g in mean_grad]).sum().sqrt()))
    return ScaleProbe(scales, tuple(losses), tuple(norms))


def effective_learning_rates(parameters: Iterable[nn.Parameter], lr: float) -> list[float]:
    """``lr / |w|^2`` for each parameter: the step size a scale-invariant weight really takes.

    For a weight that only matters through its direction (before batch-norm), a gradient
    step of ``lr`` turns it by about ``lr * |grad| / |w|``, and ``|grad|`` itself scales as
    ``1 / |w|``; so the angular step goes as ``lr / |w|^2``. Weight decay shrinks ``|w|``
    and thereby raises this effective rate.
    """
    lr = check_real("lr", lr)
    return [lr / float(p.detach().double().pow(2).sum()) for p in parameters]


def filter_normalized_direction(
    model: nn.Module, *, skip_bn_and_bias: bool = True, seed: int = 0
) -> list[torch.Tensor]:
    """A random direction in weight space, normalised filter by filter (Li et al., 2018).

    Each parameter gets Gaussian noise; for a tensor of two or more dimensions every filter (slice
    along dim 0) is rescaled to the norm of the same filter of the weight, which makes slices
    comparable across networks with different weight scales. With ``skip_bn_and_bias`` the direction
    is zero on BN-affine parameters and biases (see
    [`param_groups`][signattack.params.param_groups]); otherwise one-dimensional parameters are
    rescaled to their own norm as a whole.

    Returns:
        One tensor per entry of ``model.parameters()``, same shapes, dtypes and devices.
    """
    groups = param_groups(model)
    skipped = {id(p) for p in [*groups.bn_affine, *groups.biases]} if skip_bn_and_bias else set()
    generator = torch.Generator().manual_seed(seed)
    direction = []
    for parameter in model.parameters():
        weight = parameter.detach()
        if id(parameter) in skipped:
            direction.append(torch.zeros_like(weight))
            continue
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float64)
        reference = weight.double().cpu()
        if weight.dim() >= 2:
            noise_norm = noise.flatten(1).norm(dim=1).clamp_min(1e-12)
            scale = reference.flatten(1).norm(dim=1) / noise_norm
            noise = noise * scale.view(-1, *([1] * (weight.dim() - 1)))
        else:
            noise = noise * (reference.norm() / noise.norm().clamp_min(1e-12))
        direction.append(noise.to(dtype=weight.dtype, device=weight.device))
    return direction


@dataclass(frozen=True)
class LossSlice:
    """Mean loss along one or two weight-space directions.

    Attributes:
        alphas: Coordinates along the first direction.
        betas: Coordinates along the second direction; empty for a 1-D slice.
        losses: ``losses[i]`` at ``alphas[i]`` (1-D), or ``losses[i][j]`` at
            ``(alphas[i], betas[j])`` (2-D).
    """

    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    losses: tuple[float, ...] | tuple[tuple[float, ...], ...]


def _check_direction(model: nn.Module, direction: Sequence[torch.Tensor], name: str) -> None:
    shapes = [tuple(p.shape) for p in model.parameters()]
    given = [tuple(d.shape) for d in direction]
    if shapes != given:
        raise ValueError(
            f"{name} must hold one tensor per model parameter with the same shapes "
            f"({len(shapes)} tensors), got {len(given)} tensors with other shapes"
        )


def _coordinates(name: str, values: Sequence[float]) -> tuple[float, ...]:
    coordinates = tuple(check_real(name, v, minimum=-float("inf")) for v in values)
    if not coordinates:
        raise ValueError(f"{name} must hold at least one coordinate, got none")
    return coordinates


def _slice(
    model: nn.Module,
    data: Batches,
    coordinates: Sequence[tuple[float, ...]],
    directions: list[Sequence[torch.Tensor]],
    loss: TorchLoss,
    model_mode: ModelMode,
) -> list[float]:
    batches = _as_batches(data)
    parameters = list(model.parameters())
    results = []
    with restored(model):
        _set_mode(model, model_mode)
        origin = [p.detach().clone() for p in parameters]
        for point in coordinates:
            with torch.no_grad():
                for i, parameter in enumerate(parameters):
                    shifted = origin[i].clone()
                    for coefficient, direction in zip(point, directions, strict=True):
                        shifted.add_(direction[i], alpha=coefficient)
                    parameter.copy_(shifted)
            results.append(_mean_loss(model, batches, loss))
    return results


def loss_slice_1d(
    model: nn.Module,
    data: Batches,
    alphas: Sequence[float],
    *,
    direction: Sequence[torch.Tensor] | None = None,
    skip_bn_and_bias: bool = True,
    seed: int = 0,
    loss: TorchLoss = _mean_cross_entropy,
    model_mode: ModelMode = "eval",
) -> LossSlice:
    """Mean loss at ``w + alpha * d`` for each ``alpha``, ``d`` filter-normalised by default.

    Args:
        model: The network; its weights are restored exactly afterwards.
        data: One ``(x, y)`` batch or an iterable of them.
        alphas: Coordinates along ``d``; ``0`` is the trained model.
        direction: ``d``, one tensor per parameter; default
            [`filter_normalized_direction`][signattack.probes.weights.filter_normalized_direction]
            with ``skip_bn_and_bias`` and ``seed``.
        skip_bn_and_bias: Leave BN-affine parameters and biases out of the default ``d``.
        seed: Seed of the default direction.
        loss: ``loss(logits, labels)``, a scalar mean; cross-entropy by default.
        model_mode: How to run the model (eval by default).

    Returns:
        A [`LossSlice`][signattack.probes.weights.LossSlice] with empty ``betas``.
    """
    alphas = _coordinates("alphas", alphas)
    d = direction or filter_normalized_direction(
        model, skip_bn_and_bias=skip_bn_and_bias, seed=seed
    )
    _check_direction(model, d, "direction")
    losses = _slice(model, data, [(a,) for a in alphas], [d], loss, model_mode)
    return LossSlice(alphas, (), tuple(losses))


def loss_slice_2d(
    model: nn.Module,
    data: Batches,
    alphas: Sequence[float],
    betas: Sequence[float],
    *,
    directions: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    skip_bn_and_bias: bool = True,
    seed: int = 0,
    loss: TorchLoss = _mean_cross_entropy,
    model_mode: ModelMode = "eval",
) -> LossSlice:
    """Mean loss at ``w + alpha * d1 + beta * d2`` on a grid; see
    [`loss_slice_1d`][signattack.probes.weights.loss_slice_1d].

    The default directions are two filter-normalised random directions (seeds ``seed`` and ``seed +
    1``).
    """
    alphas, betas = _coordinates("alphas", alphas), _coordinates("betas", betas)
    if directions is None:
        directions = (
            filter_normalized_direction(model, skip_bn_and_bias=skip_bn_and_bias, seed=seed),
            filter_normalized_direction(model, skip_bn_and_bias=skip_bn_and_bias, seed=seed + 1),
        )
    for name, d in zip(("directions[0]", "directions[1]"), directions, strict=True):
        _check_direction(model, d, name)
    grid = [(a, b) for a in alphas for b in betas]
    flat = _slice(model, data, grid, list(directions), loss, model_mode)
    rows = tuple(tuple(flat[i * len(betas) : (i + 1) * len(betas)]) for i in range(len(alphas)))
    return LossSlice(alphas, betas, rows)
