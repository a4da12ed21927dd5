"""Exploding and vanishing gradients in recurrent networks.

The linear RNN ``z[t+1] = W z[t]`` with a loss on ``z[T]`` only, ``L = 0.5 |z[T] - target|^2``.
Backpropagation through time by hand: with ``delta[T] = z[T] - target`` and
``delta[t] = W^T delta[t+1]``,

    dL/dW = sum_{t=0}^{T-1} delta[t+1] z[t]^T,     dL/dz[0] = delta[0] = (W^T)^T delta[T].

So ``|dL/dz[0]| = |(W^T)^T delta[T]|``: for ``W = rho * Q`` with ``Q`` orthogonal it is exactly
``rho^T |delta[T]|``, vanishing for ``rho < 1``, constant at ``rho = 1``, exploding above.
``dL/dW`` sums ``T`` such terms, each a power of ``W^T`` applied to ``delta[T]`` times a state.

For a non-normal ``W`` (not orthogonal up to scale) the norm misleads: ``|W^T v|`` can
first grow even when every eigenvalue of ``W`` is below 1 in modulus, but in the long run
it falls at the rate of the spectral radius ``max |lambda_i(W)|``, not of ``|W|_2``.

The program (1) checks the hand-derived gradients against autograd, (2) plots
``|dL/dz[0]|`` and ``|dL/dW|`` against ``T`` for ``rho`` below, at and above 1, (3) repeats
it with tanh and ReLU between the steps, (4) does it for a non-normal ``W`` with spectral
radius 0.9 and norm above 1, (5) shows gradient-norm clipping keeping a training step finite
where the raw step explodes, and (6) plots an LSTM's gradient with respect to its first
input against ``T``, at PyTorch's initialisation (the forget gate near 0.5 halves the
gradient every step) and with a forget-gate bias of +3.

    python examples/rnn_gradients.py --out out/rnn
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from _common import parser, prepare, write_results
from torch import nn

from signattack.plots import plot_curves

HIDDEN = 16
RHOS = (0.9, 1.0, 1.1)


def identity(z: torch.Tensor) -> torch.Tensor:
    return z


def orthogonal(size: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def unroll(
    weight: torch.Tensor,
    z0: torch.Tensor,
    steps: int,
    activation: Callable[[torch.Tensor], torch.Tensor],
) -> list[torch.Tensor]:
    states = [z0]
    for _ in range(steps):
        states.append(activation(weight @ states[-1]))
    return states


def hand_gradient(
    weight: torch.Tensor, states: list[torch.Tensor], target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dW and dL/dz[0] for the linear RNN by backpropagation through time."""
    delta = states[-1] - target
    grad_weight = torch.zeros_like(weight)
    for t in range(len(states) - 2, -1, -1):
        grad_weight += torch.outer(delta, states[t])
        delta = weight.T @ delta
    return grad_weight, delta


def check_against_autograd(generator: torch.Generator, steps: int) -> float:
    """Largest relative difference between the hand-derived and autograd gradients."""
    weight = (1.05 * orthogonal(HIDDEN, generator)).requires_grad_(True)
    z0 = torch.randn(HIDDEN, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(HIDDEN, generator=generator, dtype=torch.float64)
    states = unroll(weight, z0, steps, lambda z: z)
    loss = 0.5 * (states[-1] - target).pow(2).sum()
    auto_weight, auto_z0 = torch.autograd.grad(loss, (weight, z0))
    with torch.no_grad():
        hand_weight, hand_z0 = hand_gradient(weight, [s.detach() for s in states], target)
    return max(
        float((hand_weight - auto_weight).norm() / auto_weight.norm()),
        float((hand_z0 - auto_z0).norm() / auto_z0.norm()),
    )


def gradient_norms(
    weight: torch.Tensor,
    horizons: list[int],
    activation: Callable[[torch.Tensor], torch.Tensor],
    generator_seed: int,
) -> tuple[list[float], list[float]]:
    """|dL/dz[0]| and |dL/dW| for each horizon T, with L = sum(z[T]) (delta[T] all ones)."""
    generator = torch.Generator().manual_seed(generator_seed)
    z0 = torch.randn(HIDDEN, generator=generator, dtype=torch.float64)
    to_start, to_weight = [], []
    for steps in horizons:
        start = z0.clone().requires_grad_(True)
        recurrent = weight.clone().requires_grad_(True)
        final = unroll(recurrent, start, steps, activation)[-1]
        grad_start, grad_weight = torch.autograd.grad(final.sum(), (start, recurrent))
        to_start.append(float(grad_start.norm()))
        to_weight.append(float(grad_weight.norm()))
    return to_start, to_weight


def scaled_orthogonal(rho: float, seed: int) -> torch.Tensor:
    return rho * orthogonal(HIDDEN, torch.Generator().manual_seed(seed))


def non_normal(radius: float, seed: int) -> torch.Tensor:
    """``V (radius Q) V^-1``: eigenvalues of modulus ``radius``, a badly conditioned ``V``
    (condition number 3.2), so that ``|W|_2`` is well above ``radius``."""
    generator = torch.Generator().manual_seed(seed + 1)
    left, right = orthogonal(HIDDEN, generator), orthogonal(HIDDEN, generator)
    v = left @ torch.diag(torch.logspace(0, 0.5, HIDDEN, dtype=torch.float64)) @ right
    return v @ (radius * orthogonal(HIDDEN, generator)) @ torch.linalg.inv(v)


def clipping_demo(generator: torch.Generator, steps: int, lr: float) -> dict[str, float]:
    """Loss after one SGD step on an exploding linear RNN, without and with clipping to 1."""
    base = 1.1 * orthogonal(HIDDEN, generator)
    z0 = torch.randn(HIDDEN, generator=generator, dtype=torch.float64)
    target = torch.zeros(HIDDEN, dtype=torch.float64)

    def loss_of(weight: torch.Tensor) -> torch.Tensor:
        return 0.5 * (unroll(weight, z0, steps, lambda z: z)[-1] - target).pow(2).sum()

    results = {"loss_before": float(loss_of(base))}
    for clip in (None, 1.0):
        weight = nn.Parameter(base.clone())
        loss = loss_of(weight)
        (grad,) = torch.autograd.grad(loss, weight)
        results["grad_norm"] = float(grad.norm())
        if clip is not None:
            grad = grad * min(1.0, clip / float(grad.norm()))
        with torch.no_grad():
            stepped = weight - lr * grad
        results["loss_after_clipped" if clip else "loss_after_raw"] = float(loss_of(stepped))
        results["step_norm_clipped" if clip else "step_norm_raw"] = lr * float(grad.norm())
    return results


def lstm_norms(horizons: list[int], seed: int, forget_bias: float = 0.0) -> list[float]:
    """|dL/dx[0]| for an LSTM with L = sum(h[T]), against T.

    The gradient reaching back through the cell state is scaled by the forget gate at every
    step; at PyTorch's initialisation the gate sits near sigmoid(0) = 0.5 and the gradient
    halves each step. A positive forget-gate bias keeps the gate near 1 and the gradient alive.
    """
    torch.manual_seed(seed)
    lstm = nn.LSTM(HIDDEN, HIDDEN).double()
    with torch.no_grad():  # gates are ordered input, forget, cell, output
        lstm.bias_ih_l0[HIDDEN : 2 * HIDDEN] += forget_bias
    norms = []
    for steps in horizons:
        inputs = torch.randn(steps + 1, 1, HIDDEN, dtype=torch.float64, requires_grad=True)
        output, _ = lstm(inputs)
        (grad,) = torch.autograd.grad(output[-1].sum(), inputs)
        norms.append(float(grad[0].norm()))
    return norms


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/rnn")
    args = cli.parse_args()
    out = prepare(args)
    horizons = list(range(1, 21 if args.smoke else 61, 1 if args.smoke else 3))
    generator = torch.Generator().manual_seed(args.seed)

    error = check_against_autograd(generator, steps=10 if args.smoke else 30)
    print(f"hand-derived BPTT against autograd: largest relative difference {error:.1e}")

    both = {
        f"rho = {rho}": gradient_norms(scaled_orthogonal(rho, args.seed), horizons, identity, 0)
        for rho in RHOS
    }
    linear = {name: start for name, (start, _) in both.items()}
    to_weight = {name: weight for name, (_, weight) in both.items()}
    expected = {
        f"rho = {rho}": [rho**t * linear[f"rho = {rho}"][0] / rho for t in horizons] for rho in RHOS
    }
    worst = max(
        abs(a - b) / b for name in linear for a, b in zip(linear[name], expected[name], strict=True)
    )
    print(f"linear RNN: |grad| = rho^T |delta| holds to {worst:.1e} relative")
    nonlinear = {
        f"tanh, rho = {rho}": gradient_norms(
            scaled_orthogonal(rho, args.seed), horizons, torch.tanh, 0
        )[0]
        for rho in RHOS
    }
    nonlinear["ReLU, rho = 1.1"] = gradient_norms(
        scaled_orthogonal(1.1, args.seed), horizons, torch.relu, 0
    )[0]

    skewed = non_normal(0.9, args.seed)
    radius = float(torch.linalg.eigvals(skewed).abs().max())
    norm = float(torch.linalg.matrix_norm(skewed, ord=2))
    skewed_start, _ = gradient_norms(skewed, horizons, identity, 0)
    half = len(horizons) // 2
    rate = (skewed_start[-1] / skewed_start[half]) ** (1 / (horizons[-1] - horizons[half]))
    non_normal_lines = {
        "|dL/dz[0]|, non-normal W": skewed_start,
        f"spectral radius^T ({radius:.2f}^T)": [
            skewed_start[0] * radius ** (t - 1) for t in horizons
        ],
        f"|W|_2^T ({norm:.2f}^T)": [skewed_start[0] * norm ** (t - 1) for t in horizons],
    }
    print(
        f"non-normal W: spectral radius {radius:.3f}, |W|_2 {norm:.3f}; the gradient falls by "
        f"{rate:.3f} a step over T = {horizons[half]}..{horizons[-1]}, the spectral radius's "
        f"rate, while |W|_2^T would allow growth by {norm:.2f} a step"
    )

    lstm = {
        "LSTM, default init": lstm_norms(horizons, args.seed),
        "LSTM, forget-gate bias +3": lstm_norms(horizons, args.seed, forget_bias=3.0),
    }
    clipping = clipping_demo(generator, steps=40, lr=0.01)
    print(
        f"clipping: the gradient has norm {clipping['grad_norm']:.3g}; the raw SGD step "
        f"(lr {0.01:g} x gradient) takes the loss from {clipping['loss_before']:.3g} to "
        f"{clipping['loss_after_raw']:.3g}; with the gradient clipped to norm 1 it goes to "
        f"{clipping['loss_after_clipped']:.3g}"
    )
    plot_curves(
        {
            "linear RNN, W = rho Q": linear,
            "with nonlinearities": nonlinear,
            "non-normal W": non_normal_lines,
        },
        x=horizons,
        xlabel="T (steps back)",
        ylabel=["|dL / dz[0]|"] * 3,  # each panel on its own scale
        log_y=True,
        path=out / "gradient_norms.png",
    )
    plot_curves(
        {"linear RNN: the recurrent weights": to_weight, "LSTM: the first input": lstm},
        x=horizons,
        xlabel="T (steps back)",
        ylabel=["|dL / dW|", "|dL / dx[0]|"],
        log_y=True,
        path=out / "weight_and_lstm_gradients.png",
    )
    write_results(
        out,
        {
            "autograd_relative_error": error,
            "rho_power_law_relative_error": worst,
            "horizons": horizons,
            "linear": linear,
            "weight_gradient": to_weight,
            "nonlinear": nonlinear,
            "non_normal": {
                "spectral_radius": radius,
                "norm": norm,
                "gradient": skewed_start,
                "late_rate": rate,
            },
            "lstm": lstm,
            "clipping": clipping,
        },
    )


if __name__ == "__main__":
    main()
