"""``straight_through``: what ``fn`` and ``backward`` return is checked in one place for every
library; a mistake names ``fn`` or ``backward``, what was expected and what came, never the
model; exact conversions (a quantizer's integer levels) just work."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from signattack import straight_through

LEVELS = np.array([[0.0, 3.4, 100.6, 254.9], [12.5, 77.2, 180.0, 255.0]], dtype=np.float32)


def _grad_torch(function, x):
    leaf = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(function(leaf).sum(), leaf)
    return grad


def _jax():
    return pytest.importorskip("jax")


class Torch:
    name = "torch"

    @staticmethod
    def array(values, dtype="float32"):
        return torch.as_tensor(values).to(getattr(torch, dtype))

    @staticmethod
    def round_to(dtype):
        return lambda z: torch.round(z).to(getattr(torch, dtype))

    @staticmethod
    def host(z):
        z = z.detach().cpu()
        return (z.float() if z.dtype == torch.bfloat16 else z).numpy()  # NumPy has no bfloat16

    @staticmethod
    def grad(function, x):
        return _grad_torch(function, x)

    @staticmethod
    def shape_of_two(z):
        return z[:, :2]

    @staticmethod
    def wider(z):
        return z.double()


class Jax:
    name = "jax"

    @staticmethod
    def array(values, dtype="float32"):
        jnp = _jax().numpy
        return jnp.asarray(values, dtype=getattr(jnp, dtype))

    @staticmethod
    def round_to(dtype):
        jnp = _jax().numpy
        return lambda z: jnp.round(z).astype(getattr(jnp, dtype))

    @staticmethod
    def host(z):
        return np.asarray(z)

    @staticmethod
    def grad(function, x):
        jax = _jax()
        return jax.grad(lambda z: function(z).sum())(x)

    @staticmethod
    def shape_of_two(z):
        return z[:, :2]

    @staticmethod
    def wider(z):
        return z.astype(_jax().numpy.int32)  # float64 is off by default in JAX


LIBRARIES = [Torch, Jax]


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
def test_fn_returning_numpy_names_fn_and_the_numpy_array(library):
    x = library.array(LEVELS)
    with pytest.raises(TypeError) as caught:
        straight_through(lambda z: library.host(z) + 0)(x)
    message = str(caught.value)
    assert message.startswith("straight_through's fn must return ")
    assert "NumPy array" in message
    assert "model" not in message
    assert f"shape {LEVELS.shape}, got" not in message, "not a shape mismatch"


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
@pytest.mark.parametrize(
    ("returned", "shown"), [(1.5, "a Python float (1.5)"), ([1.0, 2.0], "a list")]
)
def test_fn_returning_python_values_names_them(library, returned, shown):
    with pytest.raises(
        TypeError, match=r"straight_through's fn must return .*, got " + re.escape(shown)
    ):
        straight_through(lambda z: returned)(library.array(LEVELS))


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
def test_fn_or_backward_of_another_shape_names_which_and_both_shapes(library):
    x = library.array(LEVELS)
    with pytest.raises(
        ValueError, match=r"fn must keep the input's shape \(2, 4\), got .* of shape \(2, 2\)"
    ):
        straight_through(library.shape_of_two)(x)
    rounded = library.round_to("float32")
    with pytest.raises(
        ValueError, match=r"backward must keep the input's shape \(2, 4\), got .* of shape \(2, 2\)"
    ):
        library.grad(straight_through(rounded, library.shape_of_two), x)


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_a_uint8_quantizer_works_in_the_inputs_dtype(library, dtype):
    x = library.array(LEVELS, dtype)
    through = straight_through(library.round_to("uint8"))
    out = through(x)
    assert out.dtype == x.dtype
    expected = np.round(library.host(x).astype(np.float32))
    np.testing.assert_array_equal(library.host(out).astype(np.float32), expected)
    grad = library.grad(through, x)
    assert grad.dtype == x.dtype
    np.testing.assert_array_equal(library.host(grad).astype(np.float32), np.ones_like(LEVELS))


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
def test_a_dtype_the_input_cannot_hold_exactly_names_fn_and_the_dtype(library):
    x = library.array(LEVELS, "float16")
    with pytest.raises(TypeError, match=r"fn must return .*dtype float16, got the dtype int16"):
        straight_through(library.round_to("int16"))(x)
    with pytest.raises(TypeError, match=r"fn must return .*dtype float32, got the dtype "):
        straight_through(library.wider)(library.array(LEVELS))


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
def test_backward_returning_numpy_names_backward(library):
    x = library.array(LEVELS)
    through = straight_through(library.round_to("float32"), lambda z: np.ones(LEVELS.shape))
    with pytest.raises(TypeError) as caught:
        library.grad(through, x)
    message = str(caught.value)
    assert message.startswith("straight_through's backward must return ")
    assert "NumPy array" in message
    assert "model" not in message


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
def test_an_error_of_fn_goes_on_unchanged_with_a_note(library):
    def broken(z):
        raise ZeroDivisionError("the purifier failed")

    with pytest.raises(ZeroDivisionError, match="the purifier failed") as caught:
        straight_through(broken)(library.array(LEVELS))
    notes = getattr(caught.value, "__notes__", ["straight_through's fn"])  # from Python 3.11
    assert any("straight_through's fn" in note for note in notes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_the_identity_backward_keeps_the_dtype_and_a_stand_in_gives_its_gradient(dtype):
    x = torch.as_tensor(LEVELS).to(dtype)
    grad = _grad_torch(straight_through(torch.round), x)
    assert grad.dtype == dtype
    assert torch.equal(grad, torch.ones_like(x))
    stand_in = _grad_torch(straight_through(torch.round, lambda z: z * z / 2), x)
    assert torch.equal(stand_in, x), "d(z^2/2)/dz = z, exact in every floating dtype"


def test_a_result_on_another_device_names_fn_and_both_devices():
    x = torch.as_tensor(LEVELS)
    with pytest.raises(ValueError, match=r"fn must return an array on the input's device cpu, "):
        straight_through(lambda z: torch.empty_like(z, device="meta"))(x)


def test_a_detached_backward_names_backward():
    x = torch.as_tensor(LEVELS)
    through = straight_through(torch.round, lambda z: z.detach() * 2)
    with pytest.raises(TypeError, match="straight_through's backward must be differentiable"):
        _grad_torch(through, x)


def test_fn_that_writes_into_its_input_leaves_the_callers_tensor():
    x = torch.as_tensor(LEVELS).clone()
    kept = x.clone()
    out = straight_through(lambda z: z.round_())(x)
    assert torch.equal(x, kept)
    assert torch.equal(out, torch.round(kept))


def test_numpy_arrays_are_checked_too():
    values = LEVELS.astype(np.float64)
    np.testing.assert_array_equal(straight_through(np.round)(values), np.round(values))
    with pytest.raises(TypeError, match=r"fn must return a NumPy array .* got the dtype float32"):
        straight_through(lambda z: z.astype(np.float32))(values)


def test_a_jitted_uint8_quantizer_has_the_identity_gradient():
    jax = _jax()
    jnp = jax.numpy
    through = straight_through(lambda z: jnp.round(z).astype(jnp.uint8))
    grad = jax.jit(jax.grad(lambda z: through(z).sum()))(jnp.asarray(LEVELS))
    np.testing.assert_array_equal(np.asarray(grad), np.ones_like(LEVELS))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_result_moved_off_the_gpu_names_fn_and_both_devices():
    x = torch.as_tensor(LEVELS, device="cuda")
    assert torch.equal(straight_through(torch.round)(x), torch.round(x))
    with pytest.raises(ValueError, match=r"fn must return an array on the input's device cuda"):
        straight_through(lambda z: torch.round(z).cpu())(x)


@pytest.mark.parametrize("ignores", ["zeros_like", "stop_gradient"])
def test_a_jax_backward_that_ignores_its_input_is_refused(ignores):
    jax = _jax()
    jnp = jax.numpy
    stand_in = {
        "zeros_like": lambda t: jnp.zeros_like(t),
        "stop_gradient": lambda t: jax.lax.stop_gradient(t) * 2,
    }[ignores]
    through = straight_through(jnp.round, stand_in)
    with pytest.raises(TypeError, match="backward must be differentiable in its input"):
        jax.grad(lambda z: through(z).sum())(jnp.linspace(0.0, 3.0, 6))
    # a stand-in whose derivative is zero only somewhere is not refused
    clipped = straight_through(jnp.round, lambda t: jnp.clip(t, 0.0, 1.0))
    grad = jax.grad(lambda z: clipped(z).sum())(jnp.linspace(-1.0, 2.0, 7))
    assert float(grad.sum()) > 0


def test_a_numpy_step_inside_a_jax_attack_says_to_use_jax_numpy():
    jax = _jax()
    jnp = jax.numpy
    from signattack import IteratedSign

    weights = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    through = straight_through(lambda t: np.asarray(t).round())
    x = jnp.full((2, 4), 100.0)
    with pytest.raises(TypeError, match=r"fn must compute with jax\.numpy"):
        IteratedSign(4.0, steps=2).run(lambda t: through(t) @ weights.T, x, jnp.zeros(2, "int32"))


def test_fn_must_be_given():
    with pytest.raises(TypeError, match="fn must be callable, got NoneType"):
        straight_through(None)  # type: ignore[arg-type]


def test_a_torch_backward_may_write_into_its_input():
    through = straight_through(torch.round, lambda t: t.mul_(2))
    x = torch.linspace(0.0, 3.0, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(through(x).sum(), x)
    torch.testing.assert_close(grad, torch.full_like(x, 2.0))
