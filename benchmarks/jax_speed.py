"""The compiled JAX attack against the PyTorch eager attack, on the same network.

The digits CNN is trained with PyTorch and its weights ported to JAX
(:func:`signattack.digits.digits_cnn_in_jax`), so both backends attack one network. In one
process, interleaved (each round runs every method once, in a shuffled order), this times
IteratedSign on the test digits tiled to each batch size:

- ``torch eager``: the PyTorch backend, one forward and backward pass a step;
- ``jax compiled``: the JAX backend, the whole loop one ``jax.jit`` computation; its
  compile time, the first call less the median of the later ones, is reported apart;
- ``jax floor``: a hand-written jitted loop (gradient, sign step, projection), the least
  any JAX attack can cost;
- ``jax step by step``: the JAX backend with the loop in Python (every pass compiled on
  its own), to show what compiling the loop buys.

It also reports how many adversarial pixels the two backends agree on (to 1e-3) and the
robust accuracy each leaves, on the 449 test digits.

    python benchmarks/jax_speed.py --json docs/benchmarks/jax.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from signattack import IteratedSign
from signattack.attacks.sign import SignSteps
from signattack.digits import digits_cnn_in_jax, load_digits, train_digits_cnn


def step_by_step(attack: IteratedSign, model: Any, x: Any, y: Any) -> Any:
    """The JAX attack with its loop in Python: the update rule declared not traceable."""
    SignSteps.traceable = False  # type: ignore[misc]
    try:
        return attack(model, x, y)
    finally:
        SignSteps.traceable = True  # type: ignore[misc]


def jax_floor(model: Any, eps: float, steps: int) -> Callable[[Any, Any], Any]:
    """The hand-written JAX attack: one jitted function, the loop unrolled, the
    cross-entropy's input gradient and the projected sign step; nothing else."""
    step_size = 2.5 * eps / steps

    def loss(x: Any, y: Any) -> Any:
        logits = model(x)
        return jnp.sum(
            jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        )

    @jax.jit
    def attack(x: Any, y: Any) -> Any:
        low, high = jnp.maximum(x - eps, 0.0), jnp.minimum(x + eps, 255.0)
        x_adv = x
        for _ in range(steps):
            x_adv = jnp.clip(x_adv + step_size * jnp.sign(jax.grad(loss)(x_adv, y)), low, high)
        return x_adv

    return attack


def timed(call: Callable[[], Any]) -> float:
    """Seconds of one call, waiting for asynchronous results."""
    begin = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=16.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    data = load_digits()
    model = train_digits_cnn(data).eval()
    jax_model = digits_cnn_in_jax(model)
    attack = IteratedSign(args.eps, args.steps)
    floor = jax_floor(jax_model, args.eps, args.steps)

    x, y = data.x_test, data.y_test
    jx, jy = jnp.asarray(x.numpy()), jnp.asarray(y.numpy())
    ours, theirs = attack(model, x, y), attack(jax_model, jx, jy)
    agree = float(np.isclose(np.asarray(theirs), ours.numpy(), atol=1e-3).mean())
    with torch.no_grad():
        robust_torch = float((model(ours).argmax(1) == y).float().mean())
    robust_jax = float(jnp.mean(jnp.argmax(jax_model(theirs), axis=1) == jy))
    print(
        f"pixels agreeing: {agree:.4%}; robust accuracy torch {robust_torch:.2%}, "
        f"jax {robust_jax:.2%}"
    )

    rows = []
    for batch in args.batches:
        reps = -(-batch // len(y))
        xb, yb = x.repeat(reps, 1, 1, 1)[:batch], y.repeat(reps)[:batch]
        jxb, jyb = jnp.asarray(xb.numpy()), jnp.asarray(yb.numpy())
        first = timed(lambda: attack(jax_model, jxb, jyb))  # noqa: B023 - called at once
        methods: dict[str, Callable[[], Any]] = {
            "torch eager": lambda: attack(model, xb, yb),  # noqa: B023
            "jax compiled": lambda: attack(jax_model, jxb, jyb),  # noqa: B023
            "jax floor (hand-written jit)": lambda: floor(jxb, jyb),  # noqa: B023
            "jax step by step": lambda: step_by_step(attack, jax_model, jxb, jyb),  # noqa: B023
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        for call in methods.values():  # warm up every path once
            call()
        for _ in range(args.rounds):
            order = list(methods)
            random.shuffle(order)
            for name in order:
                times[name].append(timed(methods[name]))
        base = statistics.median(times["torch eager"])
        jax_base = statistics.median(times["jax floor (hand-written jit)"])
        for name, samples in times.items():
            median = statistics.median(samples)
            rows.append(
                {
                    "method": name,
                    "batch": batch,
                    "median_s": median,
                    "images_per_s": batch / median,
                    "ratio_to_torch": median / base,
                    "ratio_to_jax_floor": median / jax_base,
                    "compile_s": first - median if name == "jax compiled" else None,
                }
            )
            compile_note = f", compile {first - median:.2f} s" if name == "jax compiled" else ""
            print(
                f"batch {batch:5d} {name:>18}: {median:.3f} s, {median / base:.2f}x torch"
                f"{compile_note}"
            )

    report = {
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "jax": jax.__version__,
        "eps_pixels": args.eps,
        "steps": args.steps,
        "rounds": args.rounds,
        "pixel_agreement": agree,
        "robust_accuracy": {"torch": robust_torch, "jax": robust_jax},
        "rows": rows,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
