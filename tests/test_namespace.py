"""`signattack._typing.namespace` remembers each combination of array types it has
answered; what it answers must not change for that."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signattack._typing import namespace


def test_the_same_types_give_the_same_namespace_again() -> None:
    first = namespace(torch.zeros(2), 1.0)
    again = namespace(torch.ones(3), 2.0)
    assert first is again
    assert first.__name__.endswith("torch")
    assert namespace(np.zeros(2)).__name__.endswith("numpy")


def test_arrays_of_two_libraries_are_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(TypeError, match="Multiple namespaces"):
            namespace(torch.zeros(2), np.zeros(2))


def test_python_numbers_alone_are_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(TypeError, match="at least one"):
            namespace(1.0, 2)


def test_jax_zero_gradient_arrays_are_jax_after_numpy_arrays() -> None:
    jax = pytest.importorskip("jax")
    assert namespace(np.zeros(3)).__name__.endswith("numpy")
    zero_gradient = np.zeros(3, dtype=jax.dtypes.float0)
    assert namespace(zero_gradient).__name__ == "jax.numpy"
    assert namespace(np.zeros(3)).__name__.endswith("numpy")
    assert namespace(zero_gradient).__name__ == "jax.numpy"


def test_values_of_a_void_dtype_are_never_remembered() -> None:
    """Masked arrays, subclasses and scalars of a void dtype: the answer is the library's
    each time, whichever value of the same type came first."""
    jax = pytest.importorskip("jax")
    import array_api_compat

    zero = jax.dtypes.float0
    gradient = jax.grad(lambda i: 1.0, allow_int=True)(np.int32(3))  # float0, a subclass
    pairs = [
        (np.ma.masked_array(np.zeros(3)), np.ma.masked_array(np.zeros(3, dtype=zero))),
        (np.zeros((), dtype="V4")[()], np.zeros((), dtype=zero)[()]),
        (type(gradient)(np.zeros(2, dtype=np.float32)), gradient),
    ]
    for plain, void in pairs:
        for order in ((plain, void), (void, plain)):
            for value in order * 2:
                expected = array_api_compat.array_namespace(value)
                assert namespace(value) is expected
    with pytest.raises(TypeError):
        namespace(np.zeros(1), np.ma.masked_array(np.zeros(3, dtype=zero)))
