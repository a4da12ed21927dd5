"""The seams of the package: the evaluation's threat model, the probes' ``threat=``, the
checkpoint's typed identity, and old names that moved."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from signattack import FGSM, IteratedSign, Square
from signattack.core import ThreatModel
from signattack.evaluation import evaluate
from signattack.evaluation.identity import Identity
from signattack.probes import check_gradients, input_gradient, loss_along


class _RightOnlyInTraining(torch.nn.Module):
    """Predicts the label (the sign of the first input) in train mode and its opposite in
    eval mode: the clean accuracy says which mode the evaluation judged in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x[:, :1] - 0.5
        logits = torch.cat([-score, score], dim=1)
        return logits if self.training else -logits


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[0.0, 0.3], [1.0, 0.2], [0.1, 0.9], [0.9, 0.5]])
    return x, (x[:, 0] > 0.5).long()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_clean_pass_runs_in_the_attacks_model_mode(mode):
    x, y = _data()
    model = _RightOnlyInTraining().eval()
    attack = IteratedSign(0, 1, bounds=(0, 1), model_mode=mode)
    report = evaluate(model, [(x, y)], attack, [0.0])
    assert report.clean_accuracy == (1.0 if mode == "train" else 0.0)
    assert not model.training  # restored


def test_attacks_in_different_model_modes_are_refused():
    x, y = _data()
    attacks = [IteratedSign(0, 1, bounds=(0, 1)), FGSM(0, bounds=(0, 1), model_mode="train")]
    with pytest.raises(ValueError, match=r"one mode.*model_mode"):
        evaluate(_RightOnlyInTraining(), [(x, y)], attacks, [0.01])


@given(st.sampled_from(["ce", "margin"]), st.sampled_from(["eval", "train"]))
@settings(max_examples=6, deadline=None)
def test_a_probe_under_threat_equals_the_probe_under_its_three_keywords(loss, mode):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.0), torch.nn.Linear(4, 3))
    x, y = torch.rand(5, 3), torch.tensor([0, 1, 2, 0, 1])
    threat = ThreatModel((0.0, 1.0), loss, mode)
    keywords = input_gradient(model, x, y, loss=loss, bounds=(0.0, 1.0), model_mode=mode)
    assert torch.equal(input_gradient(model, x, y, threat=threat), keywords)
    along = loss_along(model, x, y, torch.ones_like(x), [0.0, 0.1], threat=threat)
    assert torch.equal(
        along,
        loss_along(
            model, x, y, torch.ones_like(x), [0.0, 0.1], bounds=(0, 1), loss=loss, model_mode=mode
        ),
    )


def test_a_probe_refuses_threat_together_with_the_keywords():
    model = torch.nn.Linear(3, 2)
    x, y = torch.rand(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="either as threat= or as loss="):
        check_gradients(model, x, y, threat=ThreatModel((0.0, 1.0)), loss="margin")
    with pytest.raises(TypeError, match="threat must be a ThreatModel"):
        input_gradient(model, x, y, threat=(0.0, 1.0))  # type: ignore[arg-type]


def test_an_attack_hands_its_threat_model_to_a_probe():
    attack = IteratedSign(8, 3, bounds=(0, 1), loss="margin")
    model = torch.nn.Linear(3, 2)
    x, y = torch.rand(2, 3), torch.tensor([0, 1])
    assert torch.equal(
        input_gradient(model, x, y, threat=attack.threat),
        input_gradient(model, x, y, loss="margin", bounds=(0, 1)),
    )
    assert FGSM(2, loss="margin", model_mode="train").threat == ThreatModel(
        (0.0, 255.0), "margin", "train"
    )


def test_the_checkpoint_stores_the_identity_it_was_bound_to(tmp_path):
    x, y = _data()
    model = torch.nn.Linear(2, 2)
    attacks = [IteratedSign(0, 2, bounds=(0, 1)), Square(0, 10, bounds=(0, 1), seed=1)]
    path = tmp_path / "run.json"
    evaluate(model, [(x, y)], attacks, [0.1, 0.05], checkpoint=path)
    stored = json.loads(path.read_text())["identity"]
    identity = Identity.of(model, attacks, (0.05, 0.1))
    assert stored == identity.to_dict()
    assert identity.attacks == 2
    assert identity.eps == (0.05, 0.1)
    renamed = Identity.of(model, attacks, (0.05, 0.1), name="mine", model_name="linear")
    assert renamed.attack == {"name": "mine"}
    assert renamed.model == {"name": "linear"}


@pytest.mark.parametrize("name", ["AttackSpec", "AttackFactory", "Attacks"])
def test_the_attack_spec_types_moved_with_a_deprecation_warning(name):
    import signattack.evaluation
    import signattack.evaluation.sweep as sweep

    with pytest.warns(DeprecationWarning, match=f"use signattack.evaluation.{name}"):
        old = getattr(sweep, name)
    assert old is getattr(signattack.evaluation, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        sweep.nothing  # noqa: B018


def test_the_evaluation_wing_imports_in_one_direction():
    """No module of the evaluation (nor the figures it draws) imports another that imports
    it back, also through function-level or type-only imports, and none imports the
    package face above it."""
    import ast
    from pathlib import Path

    import signattack

    root = Path(signattack.__file__).parent
    graph = {}
    for path in [*root.joinpath("evaluation").glob("*.py"), root / "plots.py"]:
        if path.name == "__init__.py":
            continue
        name = "signattack." + ".".join(path.relative_to(root).with_suffix("").parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("signattack"):
                imported.add(node.module)
        assert "signattack.evaluation" not in imported, f"{name} imports the package face"
        graph[name] = imported

    def reaches(start, goal, seen):
        for following in graph.get(start, ()):
            if following == goal or (
                following not in seen and (seen.add(following) or reaches(following, goal, seen))
            ):
                return True
        return False

    circles = [(a, b) for a in graph for b in graph[a] if b in graph and reaches(b, a, set())]
    assert not circles


def _modules():
    from pathlib import Path

    import signattack

    root = Path(signattack.__file__).parent
    for path in sorted(root.rglob("*.py")):
        yield path.relative_to(root.parent), path


def test_private_modules_keep_no_all():
    """A private module's names are nobody's API: an ``__all__`` there drifts into one."""
    import ast

    found = []
    for name, path in _modules():
        private = any(part.startswith("_") and not part.startswith("__") for part in name.parts)
        if not private:
            continue
        for node in ast.parse(path.read_text()).body:
            targets = (
                node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            )
            if any(getattr(target, "id", None) == "__all__" for target in targets):
                found.append(str(name))
    assert not found


def test_the_core_imports_no_framework_and_nothing_above_it():
    """The core is written against the array API: no deep-learning framework at import time
    (a function may import the library of an object it was given), and nothing of the
    package outside the core but its private typing and host helpers."""
    import ast

    allowed = {"signattack._typing", "signattack._host", "signattack._fields"}
    found = []
    for name, path in _modules():
        if name.parts[:2] != ("signattack", "core"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for module in modules:
                top = module.split(".")[0]
                inside = module.startswith("signattack.core") or module in allowed
                framework = top in {"torch", "jax", "tensorflow"} and node in tree.body
                if framework or (top == "signattack" and not inside):
                    found.append(f"{name}: {module}")
    assert not found


def test_an_attack_at_its_earlier_norm_is_described_as_earlier_versions_described_it():
    """Checkpoints and reports written before attacks took ``norm`` hold descriptions without
    it: an L-inf attack must still match them, an L2 one never."""
    from signattack import APGD
    from signattack.evaluation.identity import stable

    linf, l2 = stable(APGD(8.0, norm="linf")), stable(APGD(8.0, norm="l2"))
    assert "norm" not in linf["fields"]
    assert l2["fields"].pop("norm") == "l2"
    assert l2 == linf
