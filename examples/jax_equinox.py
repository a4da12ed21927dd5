"""Attacking an Equinox model: the same attacks and evaluation on JAX, compiled.

Trains a small Equinox CNN on scikit-learn's handwritten digits (nothing downloaded), then

1. attacks it with FGSM, IteratedSign and APGD: ``jax.Array`` in, ``jax.Array`` out;
2. times IteratedSign: the first call compiles the whole loop (``jax.jit`` over
   ``lax.scan``), later calls, also with another eps or retrained parameters of the same
   shapes, reuse it;
3. evaluates accuracy against eps for the three attacks and plots the curves.

Needs ``pip install "signattack[jax]" equinox scikit-learn matplotlib``; no PyTorch.

    python examples/jax_equinox.py --out out/jax
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from signattack import APGD, FGSM, IteratedSign
from signattack.data import digit_arrays
from signattack.evaluation import evaluate
from signattack.plots import plot_robustness_curves


class DigitsNet(eqx.Module):
    """Two 3x3 convolutions, a 2x2 max-pool and two dense layers on 8x8 digits in [0, 255]."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    dense1: eqx.nn.Linear
    dense2: eqx.nn.Linear

    def __init__(self, key: jax.Array) -> None:
        keys = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(1, 16, 3, padding=1, key=keys[0])
        self.conv2 = eqx.nn.Conv2d(16, 32, 3, padding=1, key=keys[1])
        self.dense1 = eqx.nn.Linear(32 * 4 * 4, 64, key=keys[2])
        self.dense2 = eqx.nn.Linear(64, 10, key=keys[3])

    def __call__(self, pixels: jax.Array) -> jax.Array:
        """Logits ``(batch, 10)`` of a batch of images ``(batch, 1, 8, 8)``."""
        return jax.vmap(self.one)(pixels)

    def one(self, image: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.conv1((image - 80.0) / 100.0))
        x = jax.nn.relu(self.conv2(x))
        x = jnp.max(jnp.reshape(x, (32, 4, 2, 4, 2)), axis=(2, 4))
        return self.dense2(jax.nn.relu(self.dense1(jnp.ravel(x))))


def train(x: jax.Array, y: jax.Array, *, epochs: int, seed: int) -> DigitsNet:
    """Mini-batch SGD with momentum on the cross-entropy."""
    model = DigitsNet(jax.random.key(seed))
    velocity = jax.tree.map(jnp.zeros_like, eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model: DigitsNet, velocity: DigitsNet, xb: jax.Array, yb: jax.Array):
        def loss(model: DigitsNet) -> jax.Array:
            logits = model(xb)
            return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(len(yb)), yb])

        grads = eqx.filter_grad(loss)(model)
        velocity = jax.tree.map(lambda v, g: 0.9 * v + g, velocity, grads)
        model = eqx.apply_updates(model, jax.tree.map(lambda v: -0.05 * v, velocity))
        return model, velocity

    order = np.random.default_rng(seed)
    for _ in range(epochs):
        shuffled = order.permutation(len(y))
        for start in range(0, len(y) - 63, 64):
            index = shuffled[start : start + 64]
            model, velocity = step(model, velocity, x[index], y[index])
    return model


def correct(model: DigitsNet, x: jax.Array, y: jax.Array) -> int:
    """How many of ``x`` the model classifies as ``y``."""
    return int(jnp.sum(jnp.argmax(model(x), axis=1) == y))


def timed(call) -> tuple[float, object]:
    """Seconds of one call, waiting for JAX's asynchronous result."""
    begin = time.perf_counter()
    result = jax.block_until_ready(call())
    return time.perf_counter() - begin, result


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--out", type=Path, default=Path("out/jax"), help="output folder")
    cli.add_argument("--seed", type=int, default=0, help="random seed")
    cli.add_argument("--smoke", action="store_true", help="a run of seconds, for checks")
    args = cli.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    x_train, y_train, x_test, y_test = map(jnp.asarray, digit_arrays(seed=args.seed))
    model = train(x_train, y_train, epochs=2 if args.smoke else 15, seed=args.seed)
    clean = correct(model, x_test, y_test)
    print(f"clean: {clean} of {len(y_test)} test digits correct")

    steps = 3 if args.smoke else 10
    iterated = IteratedSign(16.0, steps)
    first, _ = timed(lambda: iterated(model, x_test, y_test))
    later = [timed(lambda: iterated(model, x_test, y_test))[0] for _ in range(5)]
    other_eps, _ = timed(lambda: iterated.with_eps(8.0)(model, x_test, y_test))
    retrained = train(x_train, y_train, epochs=1, seed=args.seed + 1)
    other_model, _ = timed(lambda: iterated(retrained, x_test, y_test))
    print(
        f"IteratedSign({steps} steps) on {len(y_test)} digits: first call {first:.2f} s "
        f"(compiles the loop), then {np.median(later) * 1000:.0f} ms a call; another eps "
        f"{other_eps * 1000:.0f} ms, retrained parameters {other_model * 1000:.0f} ms"
    )

    attacks = {
        "FGSM": FGSM(32.0),
        f"IteratedSign({steps} steps)": IteratedSign(32.0, steps),
        f"APGD({steps} steps)": APGD(32.0, steps, seed=args.seed),
    }
    robust = {}
    for name, attack in attacks.items():
        x_adv = attack(model, x_test, y_test)
        moved = float(jnp.max(jnp.abs(x_adv - x_test)))
        robust[name] = correct(model, x_adv, y_test)
        print(f"{name:>22}: {robust[name]:3d} of {len(y_test)} correct at eps 32 (moved {moved})")

    batches = [(x_test[i : i + 128], y_test[i : i + 128]) for i in range(0, len(y_test), 128)]
    radii = [8.0, 32.0] if args.smoke else [4.0, 8.0, 16.0, 24.0, 32.0, 48.0]
    reports = {name: evaluate(model, batches, attack, radii) for name, attack in attacks.items()}
    for name, report in reports.items():
        print(f"{name}:\n{report.table()}")
    plot_robustness_curves({"Equinox digits CNN": reports}, path=args.out / "robustness.png")
    results = {
        "clean_correct": clean,
        "test_images": len(y_test),
        "robust_correct_at_eps_32": robust,
        "first_call_seconds": first,
        "later_call_seconds": float(np.median(later)),
        "other_eps_seconds": other_eps,
        "retrained_model_seconds": other_model,
        "robust_accuracy": {
            name: {str(e): report.robust_accuracy[e] for e in radii}
            for name, report in reports.items()
        },
    }
    path = args.out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path} and {args.out / 'robustness.png'}")


if __name__ == "__main__":
    main()
