"""Matrix factorisation by gradient descent reaches the truncated-SVD optimum.

Minimise ``f(A, B) = |X - A B|_F^2`` over ``A`` (m x k) and ``B`` (k x n). The gradients are

    df/dA = -2 (X - A B) B^T,      df/dB = -2 A^T (X - A B).

By Eckart-Young, the best rank-k approximation of ``X`` is its truncated SVD
``U_k S_k V_k^T``, with error ``sum_{i > k} s_i^2``: the optimum of ``f``. Gradient descent
from a small random start reaches it. The optimum is not unique: for any invertible
``G`` (k x k), ``(A G, G^-1 B)`` has the same product and the same loss.

And ``f`` is not convex: on the straight segment between the two global minima ``(A, B)``
and ``(A G, G^-1 B)`` a convex function would stay at or below the minimum, but ``f`` rises
above it (for ``G = -I`` the midpoint is ``(0, 0)``, where ``f = |X|_F^2``). The example
plots ``f`` along the segment for ``G = -I`` and for a random ``G``.

    python examples/matrix_factorization.py --out out/matrix_factorization
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import parser, prepare, write_results

from signattack.plots import plot_curves


def loss(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((x - a @ b) ** 2))


def low_rank_data(m: int, n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """A rank-``rank`` signal (m x n) plus Gaussian noise of standard deviation 0.1."""
    signal = rng.normal(size=(m, rank)) @ rng.normal(size=(rank, n))
    return signal + 0.1 * rng.normal(size=(m, n))


def svd_optimum(x: np.ndarray, rank: int) -> float:
    """The least ``|X - A B|_F^2`` at this rank (Eckart-Young): the discarded ``s_i^2``."""
    singular = np.linalg.svd(x, compute_uv=False)
    return float(np.sum(singular[rank:] ** 2))


def stable_rate(x: np.ndarray) -> float:
    """A step size below 2 / L for the top curvature, about 2 s_1^2."""
    return 0.2 / float(np.linalg.norm(x, ord=2)) ** 2


def descend(
    x: np.ndarray, rank: int, steps: int, lr: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Plain gradient descent on A and B together; returns them and the loss history."""
    m, n = x.shape
    a = rng.normal(scale=0.1, size=(m, rank))
    b = rng.normal(scale=0.1, size=(rank, n))
    history = [loss(x, a, b)]
    for _ in range(steps):
        residual = x - a @ b
        grad_a, grad_b = -2 * residual @ b.T, -2 * a.T @ residual
        a, b = a - lr * grad_a, b - lr * grad_b
        history.append(loss(x, a, b))
    return a, b, history


def plot(history: list[float], optimum: float, path: Path) -> Path:
    excess = np.maximum(np.array(history) - optimum, 1e-16)
    title = f"|X - AB|_F^2 reaches sum of s_i^2 beyond rank (= {optimum:.4g})"
    plot_curves(
        {title: {"f(A, B) - SVD optimum": excess.tolist()}},
        xlabel="gradient step",
        ylabel="excess loss",
        log_y=True,
        path=path,
    )
    return path


def along_segment(
    x: np.ndarray, a: np.ndarray, b: np.ndarray, g: np.ndarray, ts: np.ndarray
) -> list[float]:
    """``f`` on the straight path from ``(A, B)`` (t = 0) to ``(A G, G^-1 B)`` (t = 1)."""
    a1, b1 = a @ g, np.linalg.solve(g, b)
    return [loss(x, (1 - t) * a + t * a1, (1 - t) * b + t * b1) for t in ts]


def plot_segment(paths: dict[str, list[float]], ts: np.ndarray, optimum: float, path: Path) -> Path:
    lines = {**paths, "the optimum (both ends)": [optimum] * len(ts)}
    plot_curves(
        {"f between two global minima": lines},
        x=ts.tolist(),
        xlabel="t: (1 - t) (A, B) + t (A G, G^-1 B)",
        ylabel="|X - AB|_F^2",
        log_y=True,
        path=path,
    )
    return path


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/matrix_factorization")
    cli.add_argument("--rank", type=int, default=3)
    args = cli.parse_args()
    out = prepare(args)
    rng = np.random.default_rng(args.seed)
    m, n = (20, 15) if args.smoke else (60, 40)
    x = low_rank_data(m, n, args.rank, rng)
    optimum = svd_optimum(x, args.rank)
    a, b, history = descend(x, args.rank, 2_000 if args.smoke else 20_000, stable_rate(x), rng)
    gap = (history[-1] - optimum) / optimum
    print(f"gradient descent: {history[-1]:.6f}; truncated SVD (Eckart-Young): {optimum:.6f}")
    print(f"relative gap {gap:.2e}")

    g = rng.normal(size=(args.rank, args.rank)) + 3 * np.eye(args.rank)
    other = loss(x, a @ g, np.linalg.solve(g, b))
    print(f"(A G, G^-1 B) with a random invertible G: loss {other:.6f} (same optimum)")
    plot(history, optimum, out / "factorization_loss.png")

    ts = np.linspace(0.0, 1.0, 41)
    paths = {
        "G = -I": along_segment(x, a, b, -np.eye(args.rank), ts),
        "G random": along_segment(x, a, b, g, ts),
    }
    plot_segment(paths, ts, optimum, out / "nonconvex_path.png")
    for name, values in paths.items():
        print(
            f"segment to (A G, G^-1 B), {name}: ends {values[0]:.4f} and {values[-1]:.4f}, "
            f"largest {max(values):.4f} at t = {ts[int(np.argmax(values))]:.3f}"
        )
    print(f"|X|_F^2 = {float(np.sum(x**2)):.4f}: f is not convex")
    write_results(
        out,
        {
            "shape": [m, n],
            "rank": args.rank,
            "gradient_descent_loss": history[-1],
            "svd_optimum": optimum,
            "relative_gap": gap,
            "reparametrized_loss": other,
            "segment_t": ts.tolist(),
            "segment_losses": paths,
            "frobenius_norm_squared": float(np.sum(x**2)),
            "steps": len(history) - 1,
        },
    )


if __name__ == "__main__":
    main()
