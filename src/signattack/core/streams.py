"""Random streams that belong to the sample.

Every random draw an attack makes for a sample (a random start, Square's stripes, windows
and signs, the start of a restart) comes from a stream of its own, keyed by

* the attack's root key: 128 bits drawn once per call from its seed or its generator,
* the sample itself: a digest of its values and its label, so that the key travels with
  the sample whatever batch, position or order it lands in,
* the purpose of the draw: the attack, the target class, the restart.

The streams are counter-based: NumPy's Philox with the sample's 128-bit key and a counter
that starts at the purpose's 128 bits in its two high words, so that every purpose owns
``2**128`` blocks of the stream. A sample's draws therefore do not depend on the batch
size, on the order of the batch, or on the other samples, and neither does its result,
up to the model's own rounding: a float32 network may round a sample's logits differently
in batches of different sizes (BLAS picks its kernels by shape), which an attack that
follows gradient values (FAB-T) carries into its points at the level of that rounding.

Keys are derived once per call, on the host (one copy of the batch), and the draws are
made on the host and moved to the device once per run, never per step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from signattack._host import HostArray

__all__: list[str] = []  # internal: the attacks draw through it; nothing here is public API

Purpose = tuple[str | int, ...]
"""What a draw is for, e.g. ``("apgd", target, restart)``: streams of different purposes
never overlap."""

_KEY_BYTES = 16
"""Philox's key: two 64-bit words."""


def root_key(draws: np.random.Generator) -> bytes:
    """The 128-bit root key of one attack call, drawn from ``draws`` (one draw, whatever
    the size of the batch)."""
    return draws.bytes(_KEY_BYTES)


def _digest(*parts: bytes) -> int:
    """A 128-bit integer digest of ``parts`` (each prefixed by its length)."""
    hashed = hashlib.blake2b(digest_size=_KEY_BYTES)
    for part in parts:
        hashed.update(len(part).to_bytes(8, "little"))
        hashed.update(part)
    return int.from_bytes(hashed.digest(), "little")


def _counter(purpose: Purpose) -> int:
    """The first counter of a purpose's stream: its digest in the two high words."""
    return _digest(repr(purpose).encode()) << 128


@dataclass(frozen=True)
class SampleStreams:
    """The random streams of a batch: one 128-bit key per sample.

    Attributes:
        keys: Per sample, the Philox key: a digest of the root key, the sample's values and
            its label.
    """

    keys: tuple[int, ...]

    @classmethod
    def of(cls, root: bytes, values: HostArray, labels: HostArray) -> SampleStreams:
        """The streams of the samples ``values`` (batch first) with ``labels``.

        The values are compared as real numbers at ``float32`` precision: the same sample
        in ``float16``, ``float32``, ``float64`` or as integers has the same key (so that
        every backend and precision draws the same), and ``-0.0`` is ``0.0``.
        """
        count = len(values)
        flat: HostArray = np.asarray(values, dtype=np.float32).reshape(count, -1)
        flat = flat + np.float32(0)  # -0.0 becomes 0.0
        rows = flat.tobytes()
        size = len(rows) // count if count else 0
        classes = [int(label) for label in np.asarray(labels, dtype=np.int64).reshape(-1).tolist()]
        keys = (
            _digest(root, rows[i * size : (i + 1) * size], label.to_bytes(8, "little", signed=True))
            for i, label in enumerate(classes)
        )
        return cls(tuple(keys))

    def take(self, index: Sequence[int] | HostArray) -> SampleStreams:
        """The streams of the samples at ``index``, in that order."""
        return SampleStreams(tuple(self.keys[int(i)] for i in index))

    def generators(self, purpose: Purpose) -> list[np.random.Generator]:
        """Per sample, a generator of its stream for ``purpose``."""
        start = _counter(purpose)
        return [np.random.Generator(np.random.Philox(key=key, counter=start)) for key in self.keys]

    def draw(self, purpose: Purpose, one: Callable[[np.random.Generator], HostArray]) -> HostArray:
        """``one(generator)`` for every sample's stream of ``purpose``, stacked (batch
        first)."""
        return np.stack([one(stream) for stream in self.generators(purpose)])

    def uniform(self, purpose: Purpose, shape: tuple[int, ...]) -> HostArray:
        """Per sample, independent uniform draws in ``[-1, 1)`` of ``shape``:
        ``(batch, *shape)`` ``float64``."""
        return self.draw(purpose, lambda stream: stream.uniform(-1.0, 1.0, size=shape))
