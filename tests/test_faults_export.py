"""The fault suite of the outputs that hold adversarial examples: the export file (``.npz``,
``.pt``), :func:`load_adversarial`, :func:`verify` and ``signattack verify``.

Every surface joins by adding itself to ``SURFACES``: each then meets damaged files of every
kind, unwritable paths, every dtype through export and verify, the binding of the batches
kept beside it, and the edges of ``batch_size``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from signattack import FABT, IteratedSign, LinearClassifier
from signattack.cli import main
from signattack.core import kernels
from signattack.evaluation import evaluate, load_adversarial, verify

SURFACES = [".npz", ".pt"]
"""The suffixes an export may be written as."""

BOX = (0.0, 16.0)
"""The digits' box: 8x8 images of 17 grey levels."""


def _model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).to(dtype).eval()


def _data(model: torch.nn.Module, dtype: torch.dtype, count: int = 12, seed: int = 0):
    """Two batches of 8x8 inputs in the box, labelled by the model (a few wrongly)."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(count, 1, 8, 8, generator=generator) * 16).round().to(dtype)
    with torch.no_grad():
        y = model(x.to(next(model.parameters()).dtype)).argmax(1)
    y[:2] = (y[:2] + 1) % 10
    half = count // 2
    return [(x[:half], y[:half]), (x[half:], y[half:])]


def _attack() -> IteratedSign:
    return IteratedSign(0, steps=2, bounds=BOX)


def _export(tmp_path: Path, suffix: str, dtype: torch.dtype = torch.float32) -> tuple:
    model = _model(torch.float32 if dtype == torch.uint8 else dtype)
    path = tmp_path / f"x_adv{suffix}"
    report = evaluate(model, _data(model, dtype), _attack(), [1.0, 3.0], adversarial=path)
    return model, path, report


# --- every dtype through export -> verify ---------------------------------------------


@pytest.mark.parametrize("suffix", SURFACES)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]
)
def test_every_torch_dtype_is_exported_and_verified_in_its_dtype(tmp_path, suffix, dtype):
    model, path, report = _export(tmp_path, suffix, dtype)
    saved = load_adversarial(path)
    name = str(dtype).removeprefix("torch.")
    assert saved.dtype == name
    assert saved.library == "torch"
    for eps, points in saved.points.items():
        assert points.shape == (12, 1, 8, 8)
        x_back = torch.from_numpy(saved.x).to(dtype)
        at = torch.from_numpy(points).to(dtype)
        assert torch.equal(x_back.to(torch.float64), torch.from_numpy(saved.x).double())
        assert bool(kernels.within_linf_ball(at, x_back, eps, BOX).all())
    found = verify(model, path)
    assert found.reproduced, found.summary()
    assert found.robust_accuracy == report.robust_accuracy


def _jax_model(x):
    import jax.numpy as jnp

    rows = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
    weight = jnp.asarray(np.linspace(-1.0, 1.0, 640, dtype=np.float32).reshape(64, 10))
    return rows @ weight


@pytest.mark.slow  # JAX compiles for seconds; float16 takes the float path bfloat16 takes
@pytest.mark.parametrize("dtype", ["bfloat16", "uint8"])
def test_jax_inputs_are_exported_and_verified_in_their_dtype(tmp_path, dtype):
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 17, size=(6, 1, 8, 8)).astype(np.float32)).astype(dtype)
    y = jnp.argmax(_jax_model(x), axis=1).astype(jnp.int32)
    path = tmp_path / "x_adv.npz"
    report = evaluate(_jax_model, [(x, y)], _attack(), [2.0], adversarial=path)
    saved = load_adversarial(path)
    assert (saved.dtype, saved.library) == (dtype, "jax")
    found = verify(_jax_model, path)
    assert found.reproduced, found.summary()
    assert found.robust_accuracy == report.robust_accuracy


def test_numpy_models_are_verified(tmp_path):
    rng = np.random.default_rng(0)
    model = LinearClassifier(rng.normal(size=(3, 16)), rng.normal(size=3))
    x = rng.integers(0, 17, size=(10, 16)).astype(np.float64)
    y = model(x).argmax(1)
    path = tmp_path / "x_adv.npz"
    evaluate(model, [(x, y)], _attack(), [1.0], adversarial=path)
    assert load_adversarial(path).library == "numpy"
    assert verify(model, path).reproduced


# --- the ball, judged in the points' dtype ------------------------------------------------


class _Edge(torch.nn.Module):
    """Two logits, ``6 - x`` and ``x`` of one float16 input: the loss of class 0 climbs with
    ``x``, so that the attack ends at the ball's upper end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = x.float().reshape(x.shape[0], 1)
        return torch.cat([6.0 - value, value], dim=1)


def test_a_float16_point_the_attacks_projection_admits_is_verified(tmp_path):
    """x = 3/256: in float16, x + 8 rounds up to 8.015625, 8.0039 from x in real numbers,
    and its difference from x rounds back to 8: inside the ball as the attacks judge it."""
    x = torch.tensor([[3 / 256], [200.0]], dtype=torch.float16)
    y = torch.tensor([0, 1])
    path = tmp_path / "x_adv.npz"
    evaluate(_Edge(), [(x, y)], IteratedSign(0, steps=2, bounds=(0, 255)), [8.0], adversarial=path)
    found = verify(_Edge(), path)
    assert found.largest[8.0] > 8.0  # in real numbers
    assert found.inside[8.0], found.summary()
    assert found.reproduced
    with np.load(path) as stored:
        arrays = dict(stored)
    beyond = np.nextafter(arrays["x_adv_0"], np.float16(np.inf))  # one float16 further out
    np.savez(path, **{**arrays, "x_adv_0": beyond})
    assert not verify(_Edge(), path).inside[8.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("box", [(0.0, 255.0), (0.0, 1.0), (-2.1179, 2.64)])
def test_the_ball_check_admits_every_projected_point_and_only_rounding_beyond(dtype, box):
    """Every point the projection returns passes; a point passes only if it lies in the
    real ball up to the dtype's rounding of x +/- eps; every point really inside passes."""
    rng = np.random.default_rng(1)
    lower, upper = box
    resolution = torch.finfo(dtype).eps
    for eps in (8.0, 8 / 255, 0.3, 1.0):
        x = torch.from_numpy(rng.uniform(lower, upper, (64, 16))).to(dtype)
        low, high = kernels.ball_box_limits(x, eps, lower, upper)
        for ends in (low, high, torch.where(torch.rand(x.shape) < 0.5, low, high)):
            assert bool(kernels.within_linf_ball(ends, x, eps, box).all())
        step = torch.from_numpy(rng.uniform(-3 * eps, 3 * eps, x.shape))
        candidate = kernels.clip(
            x.double() + step, torch.full_like(step, lower), torch.full_like(step, upper)
        )
        points = candidate.to(dtype)
        exact = (points.double() - x.double()).abs()
        inside = kernels.within_linf_ball(points.reshape(-1, 1), x.reshape(-1, 1), eps, box)
        exact = exact.reshape(-1)
        scale = torch.maximum(points.double().abs(), x.double().abs()).reshape(-1) + eps
        band = resolution * scale
        assert bool((exact[inside] <= eps + band[inside]).all())
        assert bool(inside[exact <= eps].all())


def test_integer_points_are_judged_in_whole_levels():
    x = torch.tensor([[0, 10, 255]], dtype=torch.uint8)
    assert bool(
        kernels.within_linf_ball(torch.tensor([[3, 7, 252]], dtype=torch.uint8), x, 3.9, (0, 255))
    )
    assert not bool(
        kernels.within_linf_ball(torch.tensor([[4, 7, 252]], dtype=torch.uint8), x, 3.9)
    )
    assert not bool(
        kernels.within_linf_ball(torch.tensor([[1, 10, 255]], dtype=torch.uint8), x, 3, (1, 254))
    )


# --- damaged files ---------------------------------------------------------------------------


def _tensor_or_text(value):
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return str(value)
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _rewrite(path: Path, change) -> None:
    """Rewrite an export with ``change(arrays)`` applied, in its own format."""
    if path.suffix == ".pt":
        stored = torch.load(path, weights_only=True)
        changed = change(
            {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in stored.items()}
        )
        torch.save(
            {k: _tensor_or_text(v) for k, v in changed.items()},
            path,
        )
    else:
        with np.load(path) as stored:
            arrays = dict(stored)
        np.savez(path, **change(arrays))


class _Payload:
    """A pickle that would run code when loaded."""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))  # type: ignore[attr-defined]


def _pickled(path: Path) -> None:
    payload = _Payload()
    payload.marker = str(path.parent / "ran")  # type: ignore[attr-defined]
    if path.suffix == ".pt":
        torch.save({"x": payload}, path)
    else:
        with zipfile.ZipFile(path, "w") as archive, archive.open("x.npy", "w") as member:
            np.save(member, np.array([payload], dtype=object), allow_pickle=True)


DAMAGES = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbage": lambda p: p.write_bytes(b"not an export at all\n" * 10),
    "pickle with code": _pickled,
    "missing x": lambda p: _rewrite(p, lambda a: {k: v for k, v in a.items() if k != "x"}),
    "missing points": lambda p: _rewrite(
        p, lambda a: {k: v for k, v in a.items() if k != "x_adv_1"}
    ),
    "foreign": lambda p: _rewrite(p, lambda a: {"weights": np.zeros(3)}),
    "points of another shape": lambda p: _rewrite(p, lambda a: {**a, "x_adv_0": a["x_adv_0"][1:]}),
    "points of another dtype": lambda p: _rewrite(
        p, lambda a: {**a, "x_adv_0": a["x_adv_0"].astype(np.float64)}
    ),
    "labels that are not integers": lambda p: _rewrite(
        p, lambda a: {**a, "y": a["y"].astype(np.float32)}
    ),
    "report that is not JSON": lambda p: _rewrite(p, lambda a: {**a, "report": np.asarray("{")}),
    "radii of another report": lambda p: _rewrite(p, lambda a: {**a, "eps": a["eps"] * 2}),
    "a dtype it does not hold": lambda p: _rewrite(
        p, lambda a: {**a, "dtype": np.asarray("uint8")}
    ),
    "fewer labels": lambda p: _rewrite(p, lambda a: {**a, "y": a["y"][1:]}),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One good export per surface, to damage copies of."""
    folder = tmp_path_factory.mktemp("exports")
    return {suffix: _export(folder, suffix)[1].read_bytes() for suffix in SURFACES}


@pytest.mark.parametrize("suffix", SURFACES)
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_export_is_a_value_error_naming_the_file(
    tmp_path, exports, suffix, damage, capsys
):
    path = tmp_path / f"x_adv{suffix}"
    path.write_bytes(exports[suffix])
    DAMAGES[damage](path)
    with pytest.raises(ValueError, match=r"adversarial '.*x_adv\.(npz|pt)'"):
        load_adversarial(path)
    with pytest.raises(ValueError, match=r"x_adv\.(npz|pt)"):
        verify(_model(), path)
    assert not (tmp_path / "ran").exists()  # no code ran
    status = main(["verify", "--model", "signattack.models:DigitsCNN", "--adversarial", str(path)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert err.startswith("signattack verify: error: adversarial")


@pytest.mark.parametrize("suffix", SURFACES)
def test_a_missing_file_or_a_folder_is_refused_in_one_line(tmp_path, suffix, capsys):
    folder = tmp_path / f"folder{suffix}"
    folder.mkdir()
    for path in (tmp_path / f"missing{suffix}", folder):
        with pytest.raises(ValueError, match="must be a file written by evaluate"):
            load_adversarial(path)
        arguments = ["verify", "--model", "signattack.models:DigitsCNN", "--adversarial", str(path)]
        assert main(arguments) == 2
        assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("path", [5, True, b"x_adv.npz", ["x_adv.npz"]])
def test_a_path_that_is_not_a_path_is_a_type_error(path):
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        load_adversarial(path)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        verify(_model(), path)


# --- unwritable output paths --------------------------------------------------------------

UNWRITABLE = {
    "a file as its folder": lambda folder, s: (
        (folder / "file.txt").write_text("") or folder / "file.txt" / f"x{s}"
    ),
    "a folder": lambda folder, s: (folder / f"x{s}").mkdir() or folder / f"x{s}",
    "a file where its batches go": lambda folder, s: (
        (folder / f"x{s}.parts").write_text("") or folder / f"x{s}"
    ),
    "another suffix": lambda folder, s: folder / "x.json",
}


@pytest.mark.parametrize("suffix", SURFACES)
@pytest.mark.parametrize("kind", sorted(UNWRITABLE))
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, suffix, kind):
    target = UNWRITABLE[kind](tmp_path, suffix)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    calls = {"n": 0}
    model = _model()

    def counted(x):
        calls["n"] += 1
        return model(x)

    with pytest.raises(ValueError, match="adversarial"):
        evaluate(counted, _data(model, torch.float32), _attack(), [1.0], adversarial=target)
    assert calls["n"] == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("value", [5, True, b"x.npz"])
def test_an_output_that_is_not_a_path_is_a_type_error(value):
    model = _model()
    with pytest.raises(TypeError, match=r"adversarial must be a str or os\.PathLike"):
        evaluate(model, _data(model, torch.float32), _attack(), [1.0], adversarial=value)


# --- the batches kept beside an export --------------------------------------------------------


class _Interrupt(torch.nn.Module):
    """``inner``, interrupted at the batch that starts with ``stop`` while armed."""

    def __init__(self, inner: torch.nn.Module, stop: torch.Tensor) -> None:
        super().__init__()
        self.inner, self.stop, self.armed = inner, stop, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed and torch.equal(x[0].detach(), self.stop):
            raise KeyboardInterrupt
        return self.inner(x)


@pytest.mark.parametrize("suffix", SURFACES)
def test_a_resumed_export_is_complete_and_leaves_no_batches_behind(tmp_path, suffix):
    model = _model()
    data = _data(model, torch.float32)
    flaky = _Interrupt(model, data[1][0][0]).eval()
    path = tmp_path / f"x_adv{suffix}"
    run = {"checkpoint": tmp_path / "run.json", "adversarial": path, "model_name": "m"}
    with pytest.raises(KeyboardInterrupt):
        evaluate(flaky, data, _attack(), [1.0], **run)
    parts = Path(f"{path}.parts")
    assert (parts / "0.npz").is_file()
    assert not path.exists()
    (tmp_path / "notes.txt").write_text("mine")
    flaky.armed = False
    evaluate(flaky, data, _attack(), [1.0], **run)
    assert not parts.exists()
    assert verify(model, path).reproduced
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("suffix", SURFACES)
def test_batches_kept_by_another_evaluation_are_never_paired_with_this_report(tmp_path, suffix):
    """Model B's run is interrupted after its first batch; model A then exports into
    FILE.parts and is interrupted too. B, resuming from its own checkpoint on the same data,
    must not take A's points of the first batch as its own: it is refused."""
    model_a, model_b = _model(), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model_b.eval()
    data = _data(model_a, torch.float32)
    path = tmp_path / f"x_adv{suffix}"
    b_run = {"checkpoint": tmp_path / "b.json", "model_name": "b"}
    with pytest.raises(KeyboardInterrupt):
        evaluate(_Interrupt(model_b, data[1][0][0]).eval(), data, _attack(), [1.0], **b_run)
    flaky_a = _Interrupt(model_a, data[1][0][0]).eval()
    a_run = {"checkpoint": tmp_path / "a.json", "model_name": "a", "adversarial": path}
    with pytest.raises(KeyboardInterrupt):
        evaluate(flaky_a, data, _attack(), [1.0], **a_run)
    assert (Path(f"{path}.parts") / "0.npz").is_file()
    with pytest.raises(ValueError, match="another evaluation"):
        evaluate(model_b, data, _attack(), [1.0], adversarial=path, **b_run)
    assert not path.exists()


# --- batch_size ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("small"), ".npz")


@pytest.mark.parametrize(
    ("batch_size", "error"),
    [
        (-1, ValueError),
        (0, ValueError),
        (2.5, TypeError),
        (True, TypeError),
        ("8", TypeError),
        (None, TypeError),
    ],
)
def test_a_bad_batch_size_names_the_argument(small_export, batch_size, error):
    model, path, _ = small_export
    with pytest.raises(error, match="batch_size"):
        verify(model, path, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [1, 5, 12, np.int64(7), 10**9])
def test_every_batch_size_gives_the_same_numbers(small_export, batch_size):
    model, path, report = small_export
    found = verify(model, path, batch_size=batch_size)
    assert found.reproduced
    assert found.robust_accuracy == report.robust_accuracy


# --- bfloat16 results shown and plotted ------------------------------------------------------


def test_bfloat16_results_are_shown_and_plotted():
    pytest.importorskip("matplotlib")
    from signattack.plots import plot_loss_trace

    model = _model(torch.bfloat16)
    x, y = _data(model, torch.bfloat16)[0]
    result = FABT(2.0, bounds=BOX, steps=3).run(model, x, y)
    assert result.distances is not None
    assert result.distances.dtype == torch.float64  # measured, not rounded to bfloat16
    assert "median distance found" in repr(result)
    assert "median distance found" in result._repr_html_()
    losses = IteratedSign(2.0, steps=2, bounds=BOX).run(model, x, y)
    trace = losses.losses.to(torch.bfloat16)
    for given in (losses, trace):
        figure = plot_loss_trace(given)
        line = figure.axes[0].lines[-1]
        np.testing.assert_array_equal(line.get_ydata(), trace.float().mean(1).numpy())
    with pytest.raises(ValueError, match="losses must be"):
        plot_loss_trace(np.zeros(3))


def test_the_checkpoint_and_the_export_cannot_share_a_file(tmp_path):
    import torch

    from signattack import FGSM
    from signattack.evaluation import evaluate

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x, y = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64)
    same = tmp_path / "run.npz"
    with pytest.raises(ValueError, match="checkpoint and adversarial must be different files"):
        evaluate(model, [(x, y)], FGSM(0), [4.0], checkpoint=same, adversarial=same)
    assert not same.exists()


def test_a_damaged_pt_file_gives_no_advice_that_would_run_its_code(tmp_path):
    import pickle

    from signattack.evaluation import load_adversarial

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": print}))  # a pickle that names a callable
    with pytest.raises(ValueError, match="is not a file of adversarial examples") as caught:
        load_adversarial(path)
    message = str(caught.value)
    assert "weights_only=False" not in message
    assert "weights_only` set to `False" not in message
    assert "\n" not in message
    assert "\x1b" not in message


@pytest.mark.parametrize("where", ["x", "x_adv_0"])
def test_non_finite_values_in_an_export_are_named(tmp_path, where):
    from signattack.evaluation import load_adversarial

    _, good, _ = _export(tmp_path, ".npz")
    arrays = dict(np.load(good))
    arrays[where] = arrays[where].astype(np.float32)
    arrays[where].flat[0] = np.nan
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match=f"its {where} holds NaN or inf"):
        load_adversarial(bad)


def test_bfloat16_claimed_for_values_beyond_it_is_refused(tmp_path):
    from signattack.evaluation import load_adversarial

    _, good, _ = _export(tmp_path, ".npz")
    arrays = dict(np.load(good))
    arrays["x"] = arrays["x"].astype(np.float32) + np.float32(1 / 3)
    arrays["dtype"] = np.asarray("bfloat16")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="holds float32 values beyond it"):
        load_adversarial(bad)


@pytest.mark.parametrize("suffix", SURFACES)
def test_a_point_outside_the_box_fails_verification_instead_of_erring(tmp_path, suffix):
    model, path, _ = _export(tmp_path, suffix)

    def below(arrays):
        arrays["x_adv_1"] = arrays["x_adv_1"].copy()
        arrays["x_adv_1"].flat[0] = -8.0
        return arrays

    _rewrite(path, below)
    found = verify(model, path)
    assert not found.reproduced
    assert found.inside[3.0] is False
    assert found.inside[1.0] is True


def _edited_report(change):
    def edit(arrays):
        import json as json_module

        report = json_module.loads(str(arrays["report"]))
        change(report)
        arrays["report"] = np.asarray(json_module.dumps(report))
        return arrays

    return edit


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("largest", lambda r: r["max_perturbation"].update({"3.0": 0.5})),
        ("attacked", lambda r: r["attacked"].update({"1.0": r["attacked"]["1.0"] + 1})),
        (
            "broken_by",
            lambda r: r["broken_by"]["3.0"].update(
                {next(iter(r["broken_by"]["3.0"])): 5 + next(iter(r["broken_by"]["3.0"].values()))}
            ),
        ),
    ],
)
def test_an_edited_report_inside_an_export_is_not_verified(tmp_path, what, change):
    model, path, _ = _export(tmp_path, ".npz")
    assert verify(model, path).reproduced
    _rewrite(path, _edited_report(change))
    found = verify(model, path)
    assert not found.reproduced, what
    assert found.problems
    assert "NOT consistent" in found.summary()


def test_an_export_whose_per_sample_verdicts_were_swapped_is_not_verified(tmp_path):
    model, path, report = _export(tmp_path, ".npz")
    flags = list(report.robust_correct[3.0])
    broken = flags.index(False) if False in flags else None
    kept = flags.index(True) if True in flags else None
    if broken is None or kept is None:
        pytest.skip("the radius breaks all samples or none")

    def swap(data):
        stated = data["robust_correct"]["3.0"]
        stated[broken], stated[kept] = stated[kept], stated[broken]

    _rewrite(path, _edited_report(swap))
    found = verify(model, path)
    assert found.robust_accuracy == found.reported  # the same number, other samples
    assert not found.reproduced
    assert any("differ from the report's for 2 samples" in p for p in found.problems)


def test_a_stated_accuracy_the_flags_do_not_give_is_refused(tmp_path):
    from signattack.evaluation import load_adversarial

    _, path, _ = _export(tmp_path, ".npz")
    _rewrite(path, _edited_report(lambda data: data["robust_accuracy"].update({"3.0": 0.123})))
    with pytest.raises(ValueError, match=r"robust at eps 3 accuracy says 0\.123"):
        load_adversarial(path)


def test_a_report_without_a_box_claims_no_box_check():
    from signattack.evaluation import Verification

    found = Verification({1.0: 0.5}, {1.0: 0.5}, {1.0: 1.0}, {1.0: True}, None)
    assert "the ball (no box)" in found.summary()
    assert "and the box" not in found.summary()
