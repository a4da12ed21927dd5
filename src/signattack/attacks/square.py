r"""Square (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020) under L-inf and L2: a random
search that never asks for a gradient.

Square needs the model's scores alone, so a defense that masks gradients (a quantized input,
a non-differentiable preprocessing, a model behind a remote call) cannot hide from it. At
every query it proposes to change one square window of the best point so far, and keeps the
proposal for a sample only where the loss (the margin by default) improves. The window's
area is a fraction ``p`` of the image that starts at ``p_init`` and halves as the search
goes on, at the paper's points of a budget of 10,000 queries (scaled to the budget given):

    after query (of 10,000):  10   50   200  500  1000  2000  4000  6000  8000
    p / p_init becomes:       1/2  1/4  1/8  1/16 1/32  1/64  1/128 1/256 1/512

Under L-inf it starts at a vertex of the ball, with vertical stripes (every column of every
channel moved by ``+eps`` or ``-eps``), and a proposal moves the window (per channel, all
of it by ``+2 eps`` or ``-2 eps``) from the best point, projected back onto ball and box.

Under L2 it starts from a grid of tiles, each a pseudo-Gaussian bump of random sign per
channel, scaled to ``||delta||_2 = eps``. A proposal draws two windows of odd side ``s >= 3``
and moves the perturbation's mass of both, per channel, into the first, as a new bump
added to the first window's old content: ``delta`` becomes zero on the second, the
sphere's remaining room ``(eps^2 - ||delta||_2^2) / channels`` joins each channel's moved
mass, and the whole is scaled to ``||delta||_2 = eps`` before the projection onto ball
and box. The bump of side ``s`` is the paper's: two halves of rings of Chebyshev distance
``d`` from their centres, of weight ``sum_{k >= d} 1 / (k + 1)^2``, of opposite signs,
turned by a quarter at random.

Deliberate differences from the authors' reference code (AutoAttack's ``square.py``):
every sample draws its own stripes, tiles, windows and signs from a random stream of its own
(the reference draws one window per batch), keyed by the seed, by the sample's values and
label and by the restart (`signattack.core.streams`), so that the result for a sample
does not depend on the batch size, on its position or on the rest of the batch; and a window may
take every position in the image, where the reference's never reaches the last row and
column. The second makes the search stronger on small images: on the 8x8 digits at eps 32
with 1000 queries the reference leaves about 49% robust, signattack's Square 38-39%, and
signattack's with the reference's positions 49% (``benchmarks/square.py``). A proposal
that would change nothing (its window lies where the best point already is) turns its
signs, so that no query is spent on the best point itself. The L2 grid of tiles is
centred on the image (the reference's is shifted by one row and column on small images).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import numpy as np

from signattack._host import HostArray, to_numpy
from signattack._typing import Amount, Array, ArrayT, Model, device_of, moved, namespace, returned
from signattack.attacks.base import AttackResult, BallAttack
from signattack.attacks.loop import iterate, spread
from signattack.attacks.restarts import Runs, chosen_result, run_bar, still_robust, sub_batch
from signattack.backends.batch import Batch, open_threat
from signattack.core.linf import LINF
from signattack.core.losses import LossFunction, LossName
from signattack.core.norms import Feasible, NormName
from signattack.core.rules import Evaluated, Start
from signattack.core.streams import Purpose, SampleStreams
from signattack.core.threat import PIXEL_BOUNDS, ModelMode
from signattack.core.validation import Bounds, check_real, generator

__all__ = ["Square", "SquareSearch", "window_fraction"]

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
"""The queries, of a budget of 10,000, after which the window's area halves."""


def window_fraction(query: int, budget: int, p_init: float) -> float:
    """The fraction ``p`` of the image that the window covers at search query ``query``
    (counted from 0) of ``budget``: ``p_init`` halved at each of the paper's points, which
    are given for a budget of 10,000 and scaled to ``budget``."""
    scaled = int(query / budget * 10_000)
    halvings = sum(scaled > point for point in _HALVINGS)
    return p_init / float(2**halvings)


def _image_shape(x: Array) -> tuple[int, int, int]:
    """A sample's ``(channels, height, width)``: images are channels first; a sample of rank
    2 is one channel, of rank 1 a single row.

    Raises:
        ValueError: A sample has more than three axes.
    """
    shape = tuple(int(side) for side in x.shape[1:])
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 1:
        return 1, 1, shape[0]
    raise ValueError(
        "Square searches images of shape (batch, channels, height, width), (batch, height, "
        f"width) or (batch, features), got {tuple(x.shape)}"
    )


def _signs(shape: tuple[int, ...]) -> Callable[[np.random.Generator], HostArray]:
    """Rademacher signs of ``shape`` from a sample's stream."""
    return lambda stream: stream.integers(0, 2, size=shape, dtype=np.int8) * 2 - 1


def _on_device(like: Array, values: HostArray, dtype: object) -> Array:
    return moved(namespace(like).asarray(values, dtype=dtype), device_of(like))


@dataclass(frozen=True)
class SquareDraws:
    """Every random draw of one L-inf search, per sample, made before it starts (on the
    host, from the sample's own stream, moved to the device once).

    Attributes:
        stripes: The signs of the vertical stripes, ``(batch, channels, 1, width)``.
        tops: The window's first row at every query, ``(batch, queries)``.
        lefts: The window's first column at every query, ``(batch, queries)``.
        signs: The window's sign per channel at every query, ``(batch, queries,
            channels)``, in the inputs' dtype.
    """

    stripes: Array
    tops: Array
    lefts: Array
    signs: Array

    @classmethod
    def drawn(
        cls, x: Array, streams: SampleStreams, purpose: Purpose, queries: int, p_init: float
    ) -> SquareDraws:
        """The draws of a search of ``queries`` queries on ``x``: Rademacher signs, and
        window positions uniform over the image at the schedule's window size."""
        int32 = namespace(x).int32
        channels, height, width = _image_shape(x)
        sides = [_window_side(query, queries, p_init, height, width) for query in range(queries)]
        rows = np.asarray([height - tall + 1 for tall, _ in sides])
        columns = np.asarray([width - wide + 1 for _, wide in sides])
        return cls(
            _on_device(
                x, streams.draw((*purpose, "stripes"), _signs((channels, 1, width))), x.dtype
            ),
            _on_device(x, streams.draw((*purpose, "rows"), lambda s: s.integers(0, rows)), int32),
            _on_device(
                x, streams.draw((*purpose, "columns"), lambda s: s.integers(0, columns)), int32
            ),
            _on_device(x, streams.draw((*purpose, "signs"), _signs((queries, channels))), x.dtype),
        )


def _window_side(
    query: int, budget: int, p_init: float, height: int, width: int
) -> tuple[int, int]:
    """The L-inf window's height and width at search query ``query``."""
    share = window_fraction(query, budget, p_init)
    side = max(round(math.sqrt(share * height * width)), 1)
    return min(side, height), min(side, width)


def _l2_side(query: int, budget: int, p_init: float, height: int, width: int) -> int:
    """The L2 windows' side at search query ``query``: odd, at least 3, within the image."""
    side = max(round(math.sqrt(window_fraction(query, budget, p_init) * height * width)), 3)
    return min(side + 1 - side % 2, height, width)


def _rings(rows: int, columns: int) -> HostArray:
    """Half of the pseudo-Gaussian bump, of unit L2 norm: at Chebyshev distance ``d`` from
    the centre ``(rows // 2, columns // 2)`` the weight ``sum_{d <= k < rings} 1/(k+1)^2``."""
    if rows == 0:
        return np.zeros((0, columns))
    rings = max(rows, columns) // 2 + 1
    tails = np.cumsum(1.0 / np.arange(rings, 0, -1) ** 2)[::-1]
    distance = np.maximum(
        np.abs(np.arange(rows)[:, None] - rows // 2),
        np.abs(np.arange(columns)[None, :] - columns // 2),
    )
    values: HostArray = tails[distance]
    unit: HostArray = values / np.linalg.norm(values)
    return unit


def _pseudo_gaussian(side: int) -> HostArray:
    """The paper's bump of side ``side``: the upper half's rings minus the lower half's,
    ``(side, side)``, of unit L2 norm."""
    bump = np.concatenate([_rings(side // 2, side), -_rings(side - side // 2, side)])
    unit: HostArray = bump / np.linalg.norm(bump)
    return unit


def _wide(x: Array) -> object:
    """The dtype the L2 search computes norms in: ``x``'s, at least ``float32`` (a squared
    perturbation in pixel units overflows ``float16``)."""
    xp, where = namespace(x), device_of(x)
    zeros = [xp.zeros((1,), dtype=dtype, device=where) for dtype in (x.dtype, xp.float32)]
    return (zeros[0] + zeros[1]).dtype  # the promotion of the two


@dataclass(frozen=True)
class SquareL2Draws:
    """Every random draw of one L2 search, per sample, made before it starts.

    Attributes:
        tiles: The first perturbation, a grid of bumps of random sign and turn per tile and
            channel, ``(batch, channels, height, width)``, not yet scaled.
        tops, lefts: The first window's corner at every query, ``(batch, queries)``.
        tops_2, lefts_2: The second window's corner.
        turns: ``0`` or ``1`` per query: whether the bump is turned by a quarter.
        signs: The bump's sign per channel at every query, ``(batch, queries, channels)``.
        bumps: Per window side, the bump and its turned copy, flattened, ``(2 side^2,)``.
    """

    tiles: Array
    tops: Array
    lefts: Array
    tops_2: Array
    lefts_2: Array
    turns: Array
    signs: Array
    bumps: dict[int, Array]

    @classmethod
    def drawn(
        cls, x: Array, streams: SampleStreams, purpose: Purpose, queries: int, p_init: float
    ) -> SquareL2Draws:
        """The draws of a search of ``queries`` queries on ``x``."""
        channels, height, width = _image_shape(x)
        int32, wide = namespace(x).int32, _wide(x)
        sides = [_l2_side(query, queries, p_init, height, width) for query in range(queries)]
        spots = np.asarray(sides)

        def corners(name: str, extent: int) -> Array:
            return _on_device(
                x,
                streams.draw((*purpose, name), lambda s: s.integers(0, extent - spots + 1)),
                int32,
            )

        def bumps(side: int) -> Array:
            bump = _pseudo_gaussian(side)
            return _on_device(
                x, np.concatenate([np.ravel(bump), np.ravel(np.transpose(bump))]), wide
            )

        turns = streams.draw((*purpose, "turns"), lambda s: s.integers(0, 2, size=queries))
        return cls(
            _on_device(x, _tiles(streams, purpose, channels, height, width), wide),
            corners("rows", height),
            corners("columns", width),
            corners("rows 2", height),
            corners("columns 2", width),
            _on_device(x, turns, int32),
            _on_device(x, streams.draw((*purpose, "signs"), _signs((queries, channels))), wide),
            {side: bumps(side) for side in sorted(set(sides))},
        )


def _tiles(
    streams: SampleStreams, purpose: Purpose, channels: int, height: int, width: int
) -> HostArray:
    """The L2 start per sample: a centred grid of square tiles of side ``min(height,
    width) // 5`` (at least 1), each a bump of random sign per channel, turned at random."""
    side = max(min(height, width) // 5, 1)
    down, across = height // side, width // side
    bump = _pseudo_gaussian(side)
    signs = streams.draw((*purpose, "tile signs"), _signs((channels, down, across)))
    turned = streams.draw((*purpose, "tile turns"), lambda s: s.integers(0, 2, (down, across)))
    turn = np.expand_dims(np.equal(turned, 1), (2, 4))  # (batch, down, 1, across, 1)
    upright = np.reshape(bump, (1, 1, side, 1, side))
    bumps = np.where(turn, np.swapaxes(upright, 2, 4), upright)  # (batch, down, s, across, s)
    grid = np.expand_dims(signs, (3, 5)) * np.expand_dims(bumps, 1)
    tiles = np.zeros((len(signs), channels, height, width))
    top, left = (height - down * side) // 2, (width - across * side) // 2
    tiles[:, :, top : top + down * side, left : left + across * side] = grid.reshape(
        len(signs), channels, down * side, across * side
    )
    return tiles


@dataclass(frozen=True)
class _SearchState:
    """Per sample: the best point so far, its objective, the next proposal, how many
    proposals were evaluated, and what the search reads of the sample: its clean input (and
    the caller's, which integer images are rounded from), its feasible set and its draws."""

    best: Array
    objective: Array
    proposal: Array
    evaluated: Array
    x: Array
    original: Array
    feasible: Feasible
    draws: SquareDraws | SquareL2Draws


def _pixel_grid(like: Array) -> tuple[Array, Array]:
    """Each pixel's row ``(1, 1, height, 1)`` and column ``(1, 1, 1, width)`` on ``like``'s
    device, to broadcast over ``(batch, 1, height, width)``."""
    xp, where = namespace(like), device_of(like)
    _, height, width = _image_shape(like)
    rows = xp.reshape(xp.arange(height, device=where), (1, 1, height, 1))
    return rows, xp.reshape(xp.arange(width, device=where), (1, 1, 1, width))


def _window_mask(
    tops: Array, lefts: Array, tall: int, wide: int, grid: tuple[Array, Array]
) -> Array:
    """Per sample, whether each pixel lies in its window, ``(batch, 1, height, width)``, on
    the `_pixel_grid` ``grid``."""
    rows, columns = grid
    xp, size = namespace(rows), tops.shape[0]
    top, left = xp.reshape(tops, (size, 1, 1, 1)), xp.reshape(lefts, (size, 1, 1, 1))
    inside = (rows >= top) & (rows < top + tall) & (columns >= left)
    return inside & (columns < left + wide)


@dataclass(frozen=True)
class SquareSearch:
    """Square's update rule under L-inf: forward passes only (``needs_gradient = False``).

    The state's `point` is the next proposal; after the last step it is the best point,
    so that the loop's final evaluation is of the point returned. A sample the loop freezes
    once it is fooled keeps the proposal that fooled it.

    Every per-sample array lives in the state (``per_sample``): `start`, on the whole batch,
    moves the clean inputs, the feasible set and the draws there, and `update` reads them
    from the state alone, so the loop may take it down to the samples still attacked.

    Attributes:
        x: The clean inputs, ``(batch, ...)``; read by `start` alone.
        original: The caller's inputs (integers for integer images); read by `start` alone.
        feasible: The ball around ``x`` intersected with the box, which every proposal is
            projected onto; read by `start` alone.
        radius: The radius ``eps`` (``floor(eps)`` for integer images under L-inf), shared.
        p_init: The window's initial share of the image.
        steps: The queries of this run, for the schedule and the last step.
        direction: ``+1`` to raise the loss, ``-1`` to lower it (targeted).
        draws: The stripes, windows and signs of every sample, drawn before the search; read
            by `start` alone.
        counts: The integer dtype of the evaluation counts (the library's index dtype).
    """

    x: Array
    original: Array
    feasible: Feasible
    radius: Amount
    p_init: float
    steps: int
    direction: float
    draws: SquareDraws
    counts: object
    needs_gradient: ClassVar[bool] = False
    per_sample: ClassVar[bool] = True

    @functools.cached_property
    def _grid(self) -> tuple[Array, Array]:
        """The `_pixel_grid` of every window, made once per search."""
        return _pixel_grid(self.x)

    def start(self, start: Start) -> _SearchState:
        """Nothing found yet; the first proposal is `_first`."""
        xp = namespace(self.x)
        size = self.x.shape[0]
        lowest = xp.full((size,), -math.inf, dtype=self.x.dtype, device=device_of(self.x))
        none = xp.zeros((size,), dtype=self.counts, device=device_of(self.x))
        state = _SearchState(
            self.x, lowest, self.x, none, self.x, self.original, self.feasible, self.draws
        )
        return dataclasses.replace(state, proposal=self._first(state))

    def _first(self, state: _SearchState) -> Array:
        """The vertical stripes: each column of each channel at ``x + eps`` or ``x - eps``."""
        xp, x = namespace(state.x), state.x
        channels, height, width = _image_shape(x)
        image = xp.reshape(x, (x.shape[0], channels, height, width))
        stripes = image + _per_image(self.radius) * _linf(state.draws).stripes
        return state.feasible.project(xp.reshape(stripes, tuple(x.shape)))

    def point(self, state: _SearchState) -> Array:
        """The proposal to evaluate."""
        return state.proposal

    def update(
        self, state: _SearchState, step: int, losses: Array, grad: Array | None, fooled: Array
    ) -> _SearchState:
        """Keep the proposal where the objective improved; propose the next window."""
        xp = namespace(state.best)
        objective = self.direction * losses
        better = objective > state.objective
        shape = (-1,) + (1,) * (state.best.ndim - 1)
        best = xp.where(xp.reshape(better, shape), state.proposal, state.best)
        objective = xp.where(better, objective, state.objective)
        evaluated = state.evaluated + 1
        searched = dataclasses.replace(state, best=best, objective=objective, evaluated=evaluated)
        proposal = best if step == self.steps - 1 else self._window(searched, step)
        return dataclasses.replace(searched, proposal=proposal)

    def finish(self, state: _SearchState, final: Evaluated | None) -> Array:
        """The point evaluated last: the best one, or the one that fooled the model."""
        return state.proposal

    def _window(self, state: _SearchState, query: int) -> Array:
        """The proposal at search query ``query``: one window per sample moved by ``2 eps``
        per channel, from the best point, projected onto the feasible set. A window that
        would change nothing (it lies where the best point already is) turns its signs."""
        best, draws, feasible = state.best, _linf(state.draws), state.feasible
        xp = namespace(best)
        channels, height, width = _image_shape(best)
        size, shape = best.shape[0], tuple(best.shape)
        tall, wide = _window_side(query, self.steps, self.p_init, height, width)
        inside = _window_mask(draws.tops[:, query], draws.lefts[:, query], tall, wide, self._grid)
        signs = xp.reshape(draws.signs[:, query, :], (size, channels, 1, 1))
        change = 2 * _per_image(self.radius) * signs * xp.astype(inside, best.dtype)
        flat = xp.reshape(best, (size, channels, height, width))
        proposal = feasible.project(xp.reshape(flat + change, shape))
        unchanged = xp.all(xp.reshape(xp.equal(proposal, best), (size, -1)), axis=1)
        flipped = feasible.project(xp.reshape(flat - change, shape))
        return xp.where(xp.reshape(unchanged, (-1,) + (1,) * (best.ndim - 1)), flipped, proposal)


@dataclass(frozen=True)
class SquareL2Search(SquareSearch):
    """Square's update rule under L2 (see `signattack.attacks.square`).

    Attributes:
        draws: The tiles, windows, turns and signs of every sample; read by `start` alone.
        reach: The length every proposal is scaled to before the projection: ``eps``, or
            the box's diagonal where ``eps`` is longer. The search measures perturbations
            in units of it, so that no square overflows.
        rounding: What the model sees of a proposal, given the sample's clean and original
            inputs (the batch's rounding of integer images, applied to every proposal, so
            that the search moves between integer points); it reads the batch's shared
            settings alone (box, norm, dtypes), the samples' inputs from its arguments.
    """

    draws: SquareL2Draws  # type: ignore[assignment]
    reach: float
    rounding: Callable[[Array, Array, Array], Array]

    def _first(self, state: _SearchState) -> Array:
        """The grid of bumps, scaled to ``||delta||_2 = eps``."""
        return self._placed(state, _l2(state.draws).tiles)

    def _placed(self, state: _SearchState, unit: Array) -> Array:
        """``x + reach * unit / ||unit||_2`` (``x`` where ``unit`` is zero), projected onto
        ball and box, rounded as the model sees it, in ``x``'s dtype and shape."""
        xp, x = namespace(unit), state.x
        length = xp.sum(unit * unit, axis=(1, 2, 3), keepdims=True) ** 0.5
        scale = xp.where(length > 0, self.reach / xp.where(length > 0, length, 1), 0)
        point = xp.reshape(_clean(state) + unit * scale, tuple(x.shape))
        projected = state.feasible.project(xp.astype(point, x.dtype))
        return self.rounding(projected, x, state.original)

    def _window(self, state: _SearchState, query: int) -> Array:
        """The proposal at search query ``query``: the mass of both windows moved, per
        channel, into the first, as a new bump added to its old content."""
        best = state.best
        xp = namespace(best)
        draws, (channels, height, width) = _l2(state.draws), _image_shape(best)
        size, side = best.shape[0], _l2_side(query, self.steps, self.p_init, height, width)
        image = (size, channels, height, width)
        clean = _clean(state)
        delta = (xp.reshape(xp.astype(best, draws.tiles.dtype), image) - clean) / self.reach
        first, bump = _bump(draws, query, side, self._grid, self.counts)
        second = _window_mask(
            draws.tops_2[:, query], draws.lefts_2[:, query], side, side, self._grid
        )
        both = xp.astype(first | second, delta.dtype)

        def norm(v: Array, axis: tuple[int, ...]) -> Array:
            return xp.sum(v * v, axis=axis, keepdims=True) ** 0.5

        def unit(v: Array, length: Array) -> Array:
            return xp.where(length > 0, v / xp.where(length > 0, length, 1), 0)

        old = delta * xp.astype(first, delta.dtype)
        signs = xp.reshape(draws.signs[:, query, :], (size, channels, 1, 1))
        new = bump * signs
        new = new + unit(old, norm(old, (2, 3)))
        room = xp.clip(1 - norm(delta, (1, 2, 3)) ** 2, 0, None) / channels
        mass = (room + norm(delta * both, (2, 3)) ** 2) ** 0.5
        return self._placed(state, delta * (1 - both) + unit(new, norm(new, (2, 3))) * mass)


def _linf(draws: SquareDraws | SquareL2Draws) -> SquareDraws:
    """The draws of an L-inf search (the state's type holds either kind)."""
    if not isinstance(draws, SquareDraws):  # pragma: no cover - each rule makes its own
        raise TypeError(f"the L-inf search needs SquareDraws, got {type(draws).__name__}")
    return draws


def _l2(draws: SquareDraws | SquareL2Draws) -> SquareL2Draws:
    """The draws of an L2 search."""
    if not isinstance(draws, SquareL2Draws):  # pragma: no cover - each rule makes its own
        raise TypeError(f"the L2 search needs SquareL2Draws, got {type(draws).__name__}")
    return draws


def _clean(state: _SearchState) -> Array:
    """The clean inputs as images in the L2 search's wide dtype."""
    xp, x = namespace(state.x), state.x
    channels, height, width = _image_shape(x)
    image = xp.reshape(x, (x.shape[0], channels, height, width))
    return xp.astype(image, _l2(state.draws).tiles.dtype)


def _bump(
    draws: SquareL2Draws, query: int, side: int, grid: tuple[Array, Array], counts: object
) -> tuple[Array, Array]:
    """Each sample's first window (`_window_mask`) and the bump of side ``side`` in it
    (turned where drawn), zero elsewhere, both ``(batch, 1, height, width)``."""
    rows, columns = grid
    xp = namespace(rows)
    size, height, width = draws.tops.shape[0], rows.shape[2], columns.shape[3]
    down = rows - xp.reshape(draws.tops[:, query], (size, 1, 1, 1))
    across = columns - xp.reshape(draws.lefts[:, query], (size, 1, 1, 1))
    row, column = xp.clip(down, 0, side - 1), xp.clip(across, 0, side - 1)
    first = xp.equal(row, down) & xp.equal(column, across)  # nothing clipped: inside
    turned = xp.reshape(draws.turns[:, query], (size, 1, 1, 1))
    index = turned * (side * side) + row * side + column
    flat = xp.reshape(xp.astype(index, counts), (-1,))
    values = xp.reshape(xp.take(draws.bumps[side], flat), (size, 1, height, width))
    return first, values * xp.astype(first, values.dtype)


def _per_image(radius: Amount) -> Amount:
    """A radius that broadcasts over ``(batch, channels, height, width)``: a float, or a
    per-sample array ``(batch, 1, ...)`` reshaped to ``(batch, 1, 1, 1)``."""
    if isinstance(radius, (int, float)):
        return float(radius)
    return namespace(radius).reshape(radius, (-1, 1, 1, 1))


@dataclass(frozen=True)
class Square(BallAttack):
    r"""Square (Andriushchenko et al., ECCV 2020) under L-inf or L2: a random search on the
    scores.

    See `signattack.attacks.square` for the algorithm. It evaluates the model only
    (no gradient is ever asked for, so it runs on a model that cannot be differentiated: a
    torch module whose backward raises, a plain function on NumPy arrays, a model behind a
    remote call), one forward pass per query on the samples not yet fooled. It is the
    member of AutoAttack's standard suite that gradient masking cannot fool.

    Args:
        eps: Radius of the ball, ``>= 0``, in the model's input units.
        queries: The budget per sample and restart: model evaluations of the search (the
            first point included), ``>= 1`` (AutoAttack's standard suite: 5000).
        p_init: The window's initial share of the image, in ``(0, 1]`` (0.8 as in
            AutoAttack).
        restarts: Searches; each one after the first starts from a new random point, on the
            samples still robust.
        loss: ``"margin"`` (the paper's), ``"ce"``, or a per-sample loss callable; it need
            not be differentiable.
        bounds: The pixel box ``(lower, upper)``.
        targeted: Treat ``y`` as target labels and lower the loss towards them.
        seed: Seed of the random draws; ``None`` draws fresh entropy. No global random
            state is read or changed. Every sample draws from streams of its own, keyed by
            the seed (or the ``rng`` of the call), by the sample's values and label and by
            the restart: a sample's result does not depend on the batch size, on its
            position in the batch, or on the other samples.
        model_mode: ``"eval"`` (default), ``"train"`` or ``"unchanged"``.
        norm: The norm of the ball: ``"linf"`` (default) or ``"l2"``.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range.
    """

    eps: float
    queries: int = 5000
    _: KW_ONLY
    p_init: float = 0.8
    restarts: int = 1
    loss: LossName | LossFunction = "margin"
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    targeted: bool = False
    seed: int | None = None
    model_mode: ModelMode = "eval"
    norm: NormName = "linf"
    gradient_free: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._check(self.loss, "targeted", counts=("queries", "restarts"))
        p_init = check_real("p_init", self.p_init)
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must lie in (0, 1], got {self.p_init!r}")

    @property
    def name(self) -> str:
        """``Square`` under L-inf, ``Square (L2)`` under L2."""
        return "Square" if self.norm == "linf" else f"Square ({self.threat.geometry.title})"

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch, its loss trace, predictions, success and query counts.

        ``losses`` has shape ``(queries + 1, batch)``: row 0 at the clean input, row ``k``
        the best loss of the search the point came from after its ``k``-th query (the loss
        of a sample stays once it is fooled). ``queries`` counts, per sample, the model's
        evaluations: the clean one, every query, and one at the end of each search and of
        the attack.
        """
        draws = generator(rng, self.seed)
        with open_threat(model, x, y, self.threat, eps=self.eps) as batch:
            _image_shape(batch.x)  # refuses what is not an image before any query
            xp = namespace(batch.x)
            losses, predictions = batch.evaluate(batch.x, batch.labels)
            fooled = (xp.equal if self.targeted else xp.not_equal)(predictions, batch.labels)
            runs = Runs.clean(batch, losses, fooled, self.queries)
            spent = xp.full(fooled.shape, 1, dtype=batch.labels.dtype, device=device_of(fooled))
            streams = batch.streams(draws)
            for restart in range(self.restarts):
                runs, spent = self._search(batch, runs, spent, streams, restart)
            result = chosen_result(batch, runs, self.eps, self.targeted, x)
            return dataclasses.replace(result, queries=returned(spent + 1, x))

    def _rule(
        self, part: Batch, radius: float, box: Feasible, streams: SampleStreams, restart: int
    ) -> SquareSearch:
        """The search's rule on the samples ``part`` (inside the L-inf feasible set ``box``),
        drawing from ``streams``."""
        direction = -1.0 if self.targeted else 1.0
        if self.norm == "l2":
            feasible = self.threat.geometry.feasible(part.x, radius, *part.bounds)
            draws = SquareL2Draws.drawn(
                part.x, streams, ("square l2", restart), self.queries, self.p_init
            )
            diagonal = math.sqrt(math.prod(part.x.shape[1:])) * (part.bounds[1] - part.bounds[0])
            return SquareL2Search(
                part.x,
                part.original,
                feasible,
                radius,
                self.p_init,
                self.queries,
                direction,
                draws,
                part.labels.dtype,
                min(radius, diagonal),
                _rounding(part, radius),
            )
        return SquareSearch(
            part.x,
            part.original,
            box,
            radius,
            self.p_init,
            self.queries,
            direction,
            SquareDraws.drawn(part.x, streams, ("square", restart), self.queries, self.p_init),
            counts=part.labels.dtype,
        )

    def _search(
        self, batch: Batch, runs: Runs, spent: Array, streams: SampleStreams, restart: int
    ) -> tuple[Runs, Array]:
        """One search on the samples that no earlier one fooled, each drawing from its own
        stream for the restart."""
        xp = namespace(batch.x)
        radius = batch.radius(self.eps)
        todo, index, count = still_robust(batch, runs)
        if count == 0 or radius == 0:  # nothing to search, or a ball of one point
            return runs, spent
        part = sub_batch(batch, index)
        # The L-inf set, for L2 of a radius no longer than the box: it encloses the ball.
        span = part.bounds[1] - part.bounds[0]
        box = LINF.feasible(
            part.x, radius if self.norm == "linf" else min(radius, span), *part.bounds
        )
        rule = self._rule(part, radius, box, streams.take(to_numpy(index)), restart)
        with run_bar(self.name, restart=(restart + 1, self.restarts), unit="queries"):
            outcome = iterate(
                part,
                rule,
                Start(part.x, box.low, box.high, radius, radius, part.x),
                self.queries,
                targeted=self.targeted,
                early_stop=True,
                final=part.rounded(radius),
            )
        at_end = outcome.final
        if at_end is None:  # pragma: no cover - final is given
            raise RuntimeError("the attack loop did not evaluate the final iterate")
        state = outcome.state
        # A sample frozen when a proposal fooled it was evaluated once more than updated.
        frozen = xp.astype(state.evaluated < self.queries, state.evaluated.dtype)
        evaluated = state.evaluated + frozen
        searched = xp.stack(outcome.rows[: self.queries])
        clean = xp.take(runs.trace[0, ...], index)
        trace = _best_so_far(clean, searched, rule.direction)[:, :count]
        best = (rule.direction * at_end.losses)[:count]
        runs = runs.fold(todo, outcome.x_adv[:count, ...], trace, at_end.success[:count], best)
        cost = spread(todo, (evaluated + 1)[:count], xp.zeros_like(spent))
        return runs, spent + cost


def _rounding(batch: Batch, radius: float) -> Callable[[Array, Array, Array], Array]:
    """What the model sees of a proposal, given its samples' clean and original inputs: the
    batch's rounding of integer images (`Batch.rounded`) on a batch of those samples, which
    shares the box, the norm and the dtypes; the identity for floating images."""
    if not batch.integer:
        return lambda point, x, original: point

    def rounded(point: Array, x: Array, original: Array) -> Array:
        return dataclasses.replace(batch, x=x, original=original).rounded(radius)(point)

    return rounded


def _best_so_far(clean: Array, rows: Array, direction: float) -> Array:
    """The loss trace ``(queries + 1, batch)``: the clean losses, then after every query the
    best loss of the search so far (a running maximum of ``direction * loss``, given back
    in the loss's sign)."""
    xp = namespace(rows)
    best = [direction * rows[0, ...]]
    for row in range(1, rows.shape[0]):
        best.append(xp.maximum(best[-1], direction * rows[row, ...]))
    return xp.concat([clean[None, :], direction * xp.stack(best)])
