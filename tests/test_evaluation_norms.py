"""The evaluation names and checks its norm: an L2 evaluation is judged, measured, exported,
verified, checkpointed and reported in L2, and one evaluation never mixes norms.

The model is a two-class linear one whose L2 worst case is known in closed form: the sample
``x = c + r * u`` (``u`` the unit direction between the classes' weights) is broken exactly
at radius ``|r|``, and the exact attack moves it by ``eps`` along ``-u``, a point whose L-inf
distance is ``eps / sqrt(features)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch

from signattack import APGD, APGDT, FABT, AttackResult, IteratedSign, LinearClassifier, Square
from signattack.core.norms import norm_of
from signattack.core.threat import ThreatModel
from signattack.evaluation import (
    RobustnessReport,
    evaluate,
    load_adversarial,
    smallest_breaking_eps,
    standard_attacks,
    verify,
)
from signattack.evaluation._units import radius_text, robustbench_eps
from signattack.evaluation.standard import attack_record, threat_of, traits_of

FEATURES = 16
SHRINK = 1 - 2.0**-30
"""The exact attack stays this much inside its ball, so that no rounding of ``x + eps * u``
takes it outside."""
RADII = (0.25, 0.5)
SIGNED = np.array([0.1, -0.15, 0.35, -0.4, 0.6, -0.7, 0.75, 0.3, -0.05, 0.45])
"""Per sample, the signed distance to the decision boundary: broken at ``|r|``; away from
every radius, so that no verdict hangs on rounding."""


def _problem() -> tuple[LinearClassifier, np.ndarray, np.ndarray, np.ndarray]:
    """The model, inputs in the box ``[0, 1]`` (the ball of radius 0.5 around each stays
    inside it), labels, and the unit direction from class 0 to class 1."""
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=FEATURES)
    unit = signs / math.sqrt(FEATURES)
    weight = np.stack([-unit, unit])
    centre = np.full(FEATURES, 0.5)
    bias = np.array([unit @ centre, -unit @ centre])  # class 1's margin is (x - c) @ 2u
    noise = rng.uniform(-0.03, 0.03, size=(len(SIGNED), FEATURES))
    noise -= np.outer(noise @ unit, unit)  # orthogonal to u: the margin is 2r exactly
    x = centre + np.outer(SIGNED, unit) + noise
    y = (SIGNED > 0).astype(np.int64)
    y[-1] = 1 - y[-1]  # one sample misclassified without attack
    return LinearClassifier(weight, bias), x, y, unit


@dataclasses.dataclass(frozen=True)
class _ExactL2:
    """An attack of another library: the exact L2 worst case of the linear model, which
    says its threat model (an L2 ball in the box ``[0, 1]``)."""

    unit: np.ndarray
    eps: float = 0.0
    bounds: tuple[float, float] = (0.0, 1.0)
    seed: int | None = None
    norm: str = "l2"
    overshoot: float = 0.0
    """Extra L-inf move along the signs of ``u``: a point inside the L-inf ball of the same
    radius and far outside the L2 ball."""

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.bounds, "ce", "eval", self.norm)

    @property
    def name(self) -> str:
        return f"Exact-{self.norm}"

    def with_eps(self, eps):
        return dataclasses.replace(self, eps=eps)

    def __call__(self, model, x, y):
        return self.run(model, x, y).x_adv

    def run(self, model, x, y, *, rng=None):
        return self.run_per_sample(model, x, y, np.full(len(y), float(self.eps)))

    def run_per_sample(self, model, x, y, eps):
        toward = np.where(np.asarray(y) == 1, -1.0, 1.0)[:, None] * self.unit
        move = SHRINK * eps[:, None] * toward
        move += self.overshoot * eps[:, None] * np.sign(toward)
        x_adv = np.clip(x + move, *self.bounds)
        predictions = model(x_adv).argmax(axis=1)
        return AttackResult(x_adv, np.zeros((1, len(y))), predictions, predictions != y)


@pytest.fixture(scope="module")
def l2_run(tmp_path_factory):
    model, x, y, unit = _problem()
    folder = tmp_path_factory.mktemp("l2")
    export = folder / "points.npz"
    report = evaluate(
        model, [(x[:6], y[:6]), (x[6:], y[6:])], _ExactL2(unit), RADII, adversarial=export
    )
    return model, x, y, unit, report, export


def test_an_l2_evaluation_is_judged_in_closed_form_and_measured_in_l2(l2_run):
    _, _, y, _, report, _ = l2_run
    clean = [bool(flag) for flag in (SIGNED > 0) == (y == 1)]
    assert report.clean_correct == tuple(clean)
    for eps in RADII:
        assert report.robust_correct[eps] == tuple(
            c and abs(r) > eps for c, r in zip(clean, SIGNED, strict=True)
        )
        # The largest move is the L2 radius itself; in L-inf it would be eps / 4.
        assert report.max_perturbation[eps] == pytest.approx(eps, rel=1e-6)
        assert report.max_perturbation[eps] > 2 * eps / math.sqrt(FEATURES)


def test_an_l2_report_names_its_norm_in_every_table_and_file(l2_run):
    report = l2_run[4]
    assert report.metadata["norm"] == "l2"
    assert report.norm.name == "l2"
    assert "max ||d||_2" in report.table().splitlines()[0]
    assert "max \\|\\|d\\|\\|\\_2" in report.to_markdown().splitlines()[0]
    assert r"max \textbar{}\textbar{}d\textbar{}\textbar{}\_2" in report.to_latex()
    # Radii are lengths, never 8-bit levels: 0.5 on [0, 1] is no "128/255".
    assert report.radius(0.5) == "0.5"
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again.norm.name == "l2"
    assert again.table() == report.table()
    entry = report.to_robustbench()
    assert entry["threat_model"] == "L2"
    assert entry["eps"] == "0.5"
    assert "autoattack_acc" not in entry  # not AutoAttack's suite


def test_an_lint_report_keeps_its_name_and_a_report_without_a_norm_is_lint(l2_run):
    data = l2_run[4].to_dict()
    del data["metadata"]["norm"]
    old = RobustnessReport.from_dict(data)
    assert old.norm.name == "linf"
    assert "||d||_2" not in old.table()
    assert old.to_robustbench()["threat_model"] == "Linf"
    data["metadata"]["norm"] = "l3"
    with pytest.raises(ValueError, match=r"metadata\['norm'\] must be 'linf' or 'l2'"):
        RobustnessReport.from_dict(data)


@pytest.mark.parametrize(
    ("eps", "bounds", "norm", "shown"),
    [
        (127.5, (0.0, 255.0), "l2", "0.5"),
        (0.5, (0.0, 1.0), "l2", "0.5"),
        (1.0, (-1.0, 1.0), "l2", "0.5"),
        (128.0, (0.0, 255.0), "l2", f"{128 / 255:g}"),
        (8.0, (0.0, 255.0), "linf", "8/255"),
        (8.0, (0.0, 255.0), None, "8/255"),
    ],
)
def test_robustbench_writes_l2_radii_as_decimals_of_the_box_width(eps, bounds, norm, shown):
    assert robustbench_eps(eps, bounds, norm) == shown


def test_an_l2_radius_is_shown_as_a_length_in_the_users_units():
    assert radius_text(8 / 255, (0.0, 1.0)) == "8/255"
    assert radius_text(8 / 255, (0.0, 1.0), "l2") == f"{8 / 255:g}"
    assert radius_text(127.5, (0.0, 255.0), "l2") == "127.5"


def test_a_point_inside_the_lint_ball_but_outside_the_l2_ball_is_refused():
    model, x, y, unit = _problem()
    cheat = _ExactL2(unit, overshoot=0.2)  # L-inf move 0.25 + 0.2 of eps: inside
    with pytest.raises(ValueError, match=r"Exact-l2\(.*leaves the L2 ball"):
        evaluate(model, [(x, y)], cheat, [0.5])
    # The same points are inside the L-inf ball: an L-inf evaluation accepts them.
    evaluate(model, [(x, y)], dataclasses.replace(cheat, norm="linf"), [0.5])


def test_verify_checks_the_exported_points_in_the_exports_norm(l2_run, tmp_path):
    model, _, _, _, report, export = l2_run
    saved = load_adversarial(export)
    assert saved.norm == "l2"
    found = verify(model, export)
    assert found.reproduced, found.summary()
    assert found.norm == "l2"
    assert found.largest[0.5] == pytest.approx(report.max_perturbation[0.5], rel=1e-6)
    assert "||d||_2" in found.summary()
    # Move every point of the largest radius to a corner of a smaller L-inf ball: inside
    # the box and the L-inf ball of 0.5, and far outside the L2 ball (0.2 * 4 = 0.8).
    stored = dict(np.load(export))
    x, points = stored["x"], stored["x_adv_1"]
    stored["x_adv_1"] = x + 0.2 * np.sign(points - x + 1e-12)
    assert np.all((stored["x_adv_1"] > 0) & (stored["x_adv_1"] < 1))
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **stored)
    assert verify(model, tampered).inside == {0.25: True, 0.5: False}
    # An export that records another norm than its report is damaged.
    stored["norm"] = np.asarray("linf")
    np.savez(tampered, **stored)
    with pytest.raises(ValueError, match="damaged"):
        load_adversarial(tampered)


def test_an_export_without_a_norm_reads_as_lint(l2_run, tmp_path):
    model, export = l2_run[0], l2_run[5]
    stored = dict(np.load(export))
    del stored["norm"]
    data = json.loads(str(stored["report"]))
    del data["metadata"]["norm"]
    stored["report"] = np.asarray(json.dumps(data))
    old = tmp_path / "old.npz"
    np.savez(old, **stored)
    assert load_adversarial(old).norm == "linf"
    found = verify(model, old)
    assert found.norm == "linf"
    # Measured in L-inf: the L2 move of 0.5 along u is 0.5 / 4 per input.
    assert found.largest[0.5] == pytest.approx(0.5 / math.sqrt(FEATURES), rel=1e-6)


def test_one_evaluation_never_mixes_norms():
    model, x, y, unit = _problem()
    mixed = [_ExactL2(unit), IteratedSign(0.0, 2, bounds=(0.0, 1.0))]
    with pytest.raises(ValueError, match=r"one norm.*Exact-l2 \(L2\).*IteratedSign \(L-inf\)"):
        threat_of([attack.with_eps(0.5) for attack in mixed])
    with pytest.raises(ValueError, match=r"Exact-l2 \(L2\).*IteratedSign \(L-inf\)"):
        evaluate(model, [(x, y)], mixed, [0.5])
    assert traits_of(mixed[0]).norm is not None
    assert traits_of(mixed[0]).norm.name == "l2"
    assert traits_of(mixed[1]).norm.name == "linf"


def test_a_checkpoint_of_another_norm_is_refused(tmp_path):
    model, x, y, unit = _problem()
    data = [(x[:5], y[:5]), (x[5:], y[5:])]
    path = tmp_path / "progress.json"
    named = {"name": "exact", "model_name": "linear"}  # only the norm tells them apart
    first = evaluate(model, data, _ExactL2(unit, norm="linf"), [0.1], checkpoint=path, **named)
    stored = json.loads(path.read_text())
    assert stored["identity"]["norm"] == "linf"
    with pytest.raises(ValueError, match=r"belongs to another evaluation.*L-inf norm.*L2 norm"):
        evaluate(model, data, _ExactL2(unit), [0.1], checkpoint=path, **named)
    # A checkpoint that records no norm was written by an L-inf evaluation.
    del stored["identity"]["norm"]
    path.write_text(json.dumps(stored))
    assert evaluate(model, data, _ExactL2(unit, norm="linf"), [0.1], checkpoint=path, **named) == (
        first
    )
    with pytest.raises(ValueError, match=r"L-inf norm.*L2 norm"):
        evaluate(model, data, _ExactL2(unit), [0.1], checkpoint=path, **named)


def test_smallest_breaking_eps_bisects_l2_radii():
    model, x, y, unit = _problem()
    found = smallest_breaking_eps(model, x, y, _ExactL2(unit), eps_max=1.0, iterations=12)
    clean = (SIGNED > 0) == (y == 1)
    assert np.all(found[~clean] == 0)
    assert np.all(found[clean] >= np.abs(SIGNED[clean]) - 1e-9)
    assert np.all(found[clean] <= np.abs(SIGNED[clean]) / SHRINK + 2.0**-12 + 1e-9)


def test_smallest_breaking_eps_bisects_from_the_boxs_diameter_at_most():
    # eps_max far past the box: the search starts at the diameter, sqrt(16) * 1 = 4 in the
    # box [0, 1], which holds every point a larger ball would, and ends within 4 / 2**20
    model, x, y, unit = _problem()
    found = smallest_breaking_eps(model, x, y, _ExactL2(unit), eps_max=1e6, iterations=20)
    clean = (SIGNED > 0) == (y == 1)
    assert np.all(found[~clean] == 0)
    assert np.all(found[clean] >= np.abs(SIGNED[clean]) - 1e-9)
    assert np.all(found[clean] <= np.abs(SIGNED[clean]) / SHRINK + 4 * 2.0**-20 + 1e-9)


def test_the_presets_build_autoattacks_l2_suite():
    suite = standard_attacks(bounds=(0.0, 1.0), norm="l2")
    assert [type(attack) for attack in suite] == [APGD, APGDT, FABT, Square]
    for member in [*suite, *(suite.randomized or ())]:
        assert member.threat.geometry.name == "l2"
        assert traits_of(member).norm.name == "l2"
    assert [a.steps for a in suite[:3]] == [100, 100, 100]
    assert suite[3].queries == 5000
    with pytest.raises(ValueError, match="norm must be one of"):
        standard_attacks(norm="l1")


@pytest.mark.parametrize(
    ("ran", "recorded", "published"),
    [
        ("l2", "l2", True),
        ("linf", "l2", False),
        ("l2", "linf", False),
        ("linf", "linf", True),
    ],
)
def test_autoattack_acc_only_for_the_standard_suite_of_the_reports_norm(ran, recorded, published):
    suite = standard_attacks(bounds=(0.0, 1.0), norm=ran)
    report = RobustnessReport(
        eps=(0.5,),
        attack="standard",
        clean_correct=(True, False),
        robust_correct={0.5: (True, False)},
        max_perturbation={0.5: 0.5},
        attacked={0.5: 1},
        metadata={
            "bounds": [0.0, 1.0],
            "norm": recorded,
            "attacks": [attack_record(attack) for attack in suite],
        },
    )
    entry = report.to_robustbench()
    assert ("autoattack_acc" in entry) is published
    assert entry["threat_model"] == {"l2": "L2", "linf": "Linf"}[recorded]


def test_torch_inputs_are_measured_in_l2_too():
    model, x, y, unit = _problem()
    module = torch.nn.Linear(FEATURES, 2).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(model.weight))
        module.bias.copy_(torch.from_numpy(model.bias))

    @dataclasses.dataclass(frozen=True)
    class _TorchExact(_ExactL2):
        def run_per_sample(self, model, x, y, eps):
            moved = super().run_per_sample(
                lambda a: module(torch.from_numpy(a)).detach().numpy(),
                x.numpy(),
                y.numpy(),
                np.asarray(eps),
            )
            x_adv = torch.from_numpy(moved.x_adv)
            predictions = model(x_adv).argmax(dim=1)
            return AttackResult(x_adv, torch.zeros(1, len(y)), predictions, predictions != y)

    report = evaluate(
        module, [(torch.from_numpy(x), torch.from_numpy(y))], _TorchExact(unit), [0.5]
    )
    assert report.max_perturbation[0.5] == pytest.approx(0.5, rel=1e-6)
    assert report.metadata["norm"] == "l2"


@dataclasses.dataclass(frozen=True)
class _Titled(_ExactL2):
    """An attack whose name already says its norm, as the library's L2 attacks' do."""

    @property
    def name(self) -> str:
        return f"Exact ({norm_of(self.norm).title})"


def test_a_mixed_suite_names_each_norm_once():
    model, x, y, unit = _problem()
    mixed = [_Titled(unit), _Titled(unit, norm="linf")]
    with pytest.raises(ValueError, match="one norm") as refused:
        evaluate(model, [(x, y)], mixed, [0.5])
    assert "Exact (L2), Exact (L-inf)" in str(refused.value)
    assert "(L2) (L2)" not in str(refused.value)


@pytest.mark.parametrize("spelled", ["L2", " l2", "l-2"])
def test_a_checkpoint_whose_norm_is_spelled_otherwise_resumes(tmp_path, spelled):
    model, x, y, unit = _problem()
    data = [(x[:5], y[:5]), (x[5:], y[5:])]
    path = tmp_path / "progress.json"
    first = evaluate(model, data, _ExactL2(unit), [0.1], checkpoint=path)
    stored = json.loads(path.read_text())
    stored["identity"]["norm"] = spelled
    path.write_text(json.dumps(stored))
    assert evaluate(model, data, _ExactL2(unit), [0.1], checkpoint=path) == first
    # a spelling of the other norm is still another norm
    stored["identity"]["norm"] = "Linf"
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"L-inf norm.*L2 norm"):
        evaluate(model, data, _ExactL2(unit), [0.1], checkpoint=path)


def test_verify_shows_the_digits_that_tell_a_move_from_the_report(l2_run, tmp_path):
    model, _, _, _, report, export = l2_run
    stored = dict(np.load(export))
    x = stored["x"]
    largest = report.max_perturbation[0.5]
    beyond = largest * (1 + 9.8e-7)  # past verify's tolerance (2**-20), equal to 6 digits
    assert f"{beyond:g}" == f"{largest:g}"
    row = np.zeros_like(x[0])
    row[0] = -beyond if x[0, 0] > 0.5 else beyond
    stored["x_adv_1"] = stored["x_adv_1"].copy()
    stored["x_adv_1"][0] = x[0] + row
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **stored)
    found = verify(model, tampered)
    message = next(p for p in found.problems if "move an input" in p)
    told = re.search(r"by ([0-9.e+-]+), the report says at most ([0-9.e+-]+)$", message)
    assert told is not None, message
    moved, bound = (float(number) for number in told.groups())
    assert moved > bound, message  # the move and the report's bound, told apart
    assert moved == pytest.approx(beyond, rel=1e-9)
    assert bound == pytest.approx(largest, rel=1e-9)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b'{"a": 1}', "not an npz archive"),
        (b"", "empty"),
        (b"\x80\x04K\x01.", "a pickle"),
        (b"\x93NUMPY\x01\x00", "single NumPy array"),
    ],
)
def test_a_file_that_is_no_npz_archive_is_named_for_what_it_is(tmp_path, content, said):
    path = tmp_path / "points.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="cannot be read") as refused:
        load_adversarial(path)
    assert said in str(refused.value)
    if said != "a pickle":
        assert "pickled" not in str(refused.value)
