"""Evaluation checkpoints: bound to the model, data, attack, eps and version that made them."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import linear_pair

from signattack import FGSM, IteratedSign
from signattack._io import write_atomically
from signattack.evaluation import evaluate
from signattack.evaluation.identity import stable

EPS = [2.0, 8.0]


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))


def _data(samples: int = 20, size: int = 5, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(samples, 1, 3, 4, generator=generator) * 255
    y = torch.randint(0, 3, (samples,), generator=generator)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, samples, size)]


ATTACK = IteratedSign(0, 3, random_start=True, seed=1)


def _interrupted(batches, *, after):
    """The first ``after`` batches, then an interruption."""
    yield from batches[:after]
    raise KeyboardInterrupt


def test_a_resume_gives_the_uninterrupted_report_and_reuses_the_stored_results(tmp_path):
    model, data, path = _net(0), _data(), tmp_path / "run.json"
    expected = evaluate(model, data, ATTACK, EPS)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, _interrupted(data, after=2), ATTACK, EPS, checkpoint=path)
    stored = json.loads(path.read_text())
    assert sorted(stored["batches"]) == ["0", "1"]

    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    evaluate(model, data, ATTACK, EPS)
    fresh, seen[:] = sum(seen), []
    assert evaluate(model, data, ATTACK, EPS, checkpoint=path) == expected
    resumed, seen[:] = sum(seen), []
    assert 0 < resumed < fresh, "the two stored batches are not evaluated again"
    assert evaluate(model, data, ATTACK, EPS, checkpoint=path) == expected
    assert seen == [], "a finished checkpoint runs the model no more"
    assert json.loads(path.read_text())["total"] == 4


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "run.json"
    evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)
    with pytest.raises(ValueError, match=r"run\.json belongs to another evaluation: the model"):
        evaluate(_net(1), _data(), ATTACK, EPS, checkpoint=path)
    # A buffer counts as much as a parameter.
    model = _net(0)
    model.register_buffer("scale", torch.ones(1))
    with pytest.raises(ValueError, match="the model differs"):
        evaluate(model, _data(), ATTACK, EPS, checkpoint=path)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_data()[:2], "the data has 2 batches"),
        (_data(size=10), "the data differs at batch 0"),
        (_data(seed=1), "the data differs at batch 0"),
        (_data() + _data(seed=5)[:1], "the data has at least 5 batches"),
        (_data() + _data(seed=5), "the data has at least 5 batches"),
    ],
    ids=["fewer batches", "another batch size", "other samples", "more batches", "many more"],
)
def test_a_checkpoint_of_other_data_is_refused_and_left_as_it_was(tmp_path, data, match):
    path = tmp_path / "run.json"
    evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)
    written = path.read_bytes()
    with pytest.raises(ValueError, match=match):
        evaluate(_net(0), data, ATTACK, EPS, checkpoint=path)
    assert path.read_bytes() == written, "a refused resume must not touch the file"
    evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)  # the original run still resumes


@pytest.mark.parametrize(
    ("attack", "eps", "match"),
    [
        (IteratedSign(0, 4, random_start=True, seed=1), EPS, "the attack differs"),
        (IteratedSign(0, 3, random_start=True, seed=2), EPS, "the attack differs"),
        (FGSM(0), EPS, "the attack differs"),
        (ATTACK, [2.0, 4.0], r"the eps differ \(\[2.0, 8.0\] there, \[2.0, 4.0\] here\)"),
    ],
)
def test_a_checkpoint_of_another_attack_or_eps_is_refused(tmp_path, attack, eps, match):
    path = tmp_path / "run.json"
    evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)
    with pytest.raises(ValueError, match=match):
        evaluate(_net(0), _data(), attack, eps, checkpoint=path)


def test_the_radius_of_a_ready_made_attack_is_no_part_of_the_identity(tmp_path):
    path = tmp_path / "run.json"
    first = evaluate(_net(0), _data(), IteratedSign(0, 3), EPS, checkpoint=path)
    assert evaluate(_net(0), _data(), IteratedSign(8, 3), EPS, checkpoint=path) == first


def test_a_folder_and_bad_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must be a file, got a folder"):
        evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=tmp_path)
    with pytest.raises(TypeError, match="name must be a non-empty str or None, got 3"):
        evaluate(_net(0), _data(), ATTACK, EPS, name=3)
    with pytest.raises(TypeError, match="model_name must be a non-empty str or None, got ''"):
        evaluate(_net(0), _data(), ATTACK, EPS, model_name="")


def test_a_checkpoint_of_another_version_is_refused(tmp_path):
    path = tmp_path / "run.json"
    evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)
    document = json.loads(path.read_text())
    document["identity"]["version"] = "0.0.1"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"written by signattack 0\.0\.1"):
        evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)


def _steps(eps: float, steps: int) -> IteratedSign:
    return IteratedSign(eps, steps)


def test_lambdas_and_closures_need_a_name_and_partials_describe_themselves(tmp_path):
    model, data = _net(0), _data()
    with pytest.raises(ValueError, match=r"lambda.*pass name="):
        evaluate(model, data, lambda e: FGSM(e), EPS, checkpoint=tmp_path / "a.json")
    steps = 3

    def closure(eps):
        return IteratedSign(eps, steps)

    with pytest.raises(ValueError, match=r"closure.*pass name="):
        evaluate(model, data, closure, EPS, checkpoint=tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists()

    # Two lambdas with names are two evaluations; the same name resumes.
    named = evaluate(
        model, data, lambda e: FGSM(e), EPS, checkpoint=tmp_path / "b.json", name="fgsm"
    )
    assert named.attack == "fgsm"
    with pytest.raises(ValueError, match="the attack differs"):
        evaluate(
            model,
            data,
            lambda e: IteratedSign(e, 3),
            EPS,
            checkpoint=tmp_path / "b.json",
            name="bim-3",
        )

    # A partial is described by its function and arguments, not by a memory address.
    three, four = functools.partial(_steps, steps=3), functools.partial(_steps, steps=4)
    assert stable(three) == stable(functools.partial(_steps, steps=3)) != stable(four)
    evaluate(model, data, three, EPS, checkpoint=tmp_path / "c.json")
    with pytest.raises(ValueError, match="the attack differs"):
        evaluate(model, data, four, EPS, checkpoint=tmp_path / "c.json")
    assert "0x" not in json.dumps(json.loads((tmp_path / "c.json").read_text())["identity"])


def test_identities_are_the_same_in_a_new_process(tmp_path):
    script = """
import functools, json, sys, torch
from signattack import IteratedSign
from signattack.evaluation.identity import stable
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
factory = functools.partial(IteratedSign, steps=3, loss="margin")
print(json.dumps([stable(model), stable(factory), stable(IteratedSign(8, 5, seed=3))]))
"""
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout
    assert "0x" not in runs[0].stdout


def _tamper(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["batches"]["0"].update(clean=d["batches"]["0"]["clean"][:2]),
        lambda d: d["batches"]["0"].update(size=2),
        lambda d: d["batches"]["0"]["robust"][0].__setitem__(0, "yes"),
        lambda d: d["batches"]["0"].update(attacked=[99, 0]),
        lambda d: d["batches"]["0"].update(largest=[-1.0, 0.0]),
        lambda d: d["batches"]["0"].pop("digest"),
        lambda d: d["batches"].update(x={}),
        lambda d: d.update(batches=[]),
        lambda d: d.update(total="4"),
        lambda d: d.pop("identity"),
        lambda d: d.update(format=1),
    ],
    ids=[
        "short clean",
        "size",
        "not a flag",
        "attacked",
        "negative distance",
        "no digest",
        "bad key",
        "batches list",
        "total string",
        "no identity",
        "old format",
    ],
)
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, change):
    path = tmp_path / "run.json"
    evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)
    _tamper(path, change)
    with pytest.raises(ValueError, match=r"checkpoint .*run\.json .*(damaged|format|not a)"):
        evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)


def test_a_consistent_edit_that_drops_samples_is_refused(tmp_path):
    path = tmp_path / "run.json"
    evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)

    def drop_one(document):
        entry = document["batches"]["1"]
        entry["size"] = 4
        entry["clean"] = [True, True, True, True]
        entry["robust"] = [[True] * 4, [True] * 4]
        entry["attacked"] = [4, 4]

    _tamper(path, drop_one)
    with pytest.raises(ValueError, match=r"run\.json is damaged \(batch 1: 4 results for 5"):
        evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)


def test_a_checkpoint_of_the_first_release_is_refused_saying_why(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"fingerprint": "0123456789abcdef", "batches": {}}))
    with pytest.raises(ValueError, match=r"written by signattack 0\.1\.0 \(format 1\)"):
        evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)


def test_a_sample_resurrected_by_hand_is_refused(tmp_path):
    path = tmp_path / "run.json"
    evaluate(_net(0), _data(), ATTACK, [64.0, 128.0], checkpoint=path)
    document = json.loads(path.read_text())
    entry = document["batches"]["0"]
    broken = entry["robust"][0].index(False) if False in entry["robust"][0] else None
    assert broken is not None, "eps 64 should break a sample of this linear model"
    entry["robust"][1][broken] = True  # robust again at the larger eps
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="robust at an eps after it was broken"):
        evaluate(_net(0), _data(), ATTACK, [64.0, 128.0], checkpoint=path)


@pytest.mark.parametrize(
    "content", [b"", b'{"format": 2, "identity": {', b"\xff\xfe not json", b"[1, 2]", b"null"]
)
def test_empty_truncated_and_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"checkpoint .*run\.json is not a signattack checkpoint"):
        evaluate(_net(0), _data(), ATTACK, EPS, checkpoint=path)
    assert path.read_bytes() == content, "a refused file is left as it was"


def test_numpy_models_are_identified_by_their_weights(tmp_path):
    first, _ = linear_pair(3, 12, seed=0)
    second, _ = linear_pair(3, 12, seed=1)
    data = [(b[0].double().numpy(), b[1].numpy()) for b in _data()]
    evaluate(first, data, FGSM(0), EPS, checkpoint=tmp_path / "run.json")
    with pytest.raises(ValueError, match="the model differs"):
        evaluate(second, data, FGSM(0), EPS, checkpoint=tmp_path / "run.json")


def test_a_model_that_is_a_closure_needs_a_model_name(tmp_path):
    net = _net(0)
    with pytest.raises(ValueError, match="model_name="):
        evaluate(lambda x: net(x), _data(), ATTACK, EPS, checkpoint=tmp_path / "run.json")
    report = evaluate(
        lambda x: net(x), _data(), ATTACK, EPS, checkpoint=tmp_path / "run.json", model_name="net0"
    )
    assert report.samples == 20


def test_files_are_synced_before_the_rename_and_get_the_usual_permissions(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    previous = os.umask(0o027)
    try:
        write_atomically(tmp_path / "out.json", b"{}")
    finally:
        os.umask(previous)
    assert events[:2] == ["fsync", "replace"]
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"], "no temporary file is left"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_bytes(b"old")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_the_report_covers_exactly_the_data_passed(tmp_path):
    data = _data()
    report = evaluate(_net(0), data, ATTACK, EPS, checkpoint=tmp_path / "run.json")
    with torch.no_grad():
        clean = torch.cat([(_net(0)(x).argmax(1) == y) for x, y in data])
    assert report.clean_correct == tuple(clean.tolist())
    assert np.all(np.array(report.robust_correct[8.0]) <= np.array(report.robust_correct[2.0]))


def test_a_sequence_of_attacks_resumes_to_the_uninterrupted_report(tmp_path):
    from signattack import APGD

    model, data, path = _net(0), _data(), tmp_path / "run.json"
    attacks = [IteratedSign(0, 2), APGD(0, 4, loss="dlr", seed=3)]
    expected = evaluate(model, data, attacks, EPS)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, _interrupted(data, after=3), attacks, EPS, checkpoint=path)
    assert evaluate(model, data, attacks, EPS, checkpoint=path) == expected
    with pytest.raises(ValueError, match="the attack differs"):
        evaluate(model, data, attacks[:1], EPS, checkpoint=path)
    with pytest.raises(ValueError, match="the attack differs"):
        evaluate(model, data, attacks[::-1], EPS, checkpoint=path)


def test_the_report_carries_signs_of_gradient_masking():
    softmax = torch.nn.Sequential(_net(0), torch.nn.Softmax(dim=1))
    report = evaluate(softmax, _data(), ATTACK, EPS)
    assert any("probabilities, not logits" in text for text in report.warnings)
    assert "warning: the model returns probabilities" in report.table()
    # This linear model saturates cross-entropy on some pixel inputs (float32 rounds their
    # gradient to zero: masking too); with smaller weights it does not.
    assert any("exactly zero" in text for text in evaluate(_net(0), _data(), ATTACK, EPS).warnings)
    gentle = _net(0)
    with torch.no_grad():
        gentle[1].weight.mul_(0.01)
    assert evaluate(gentle, _data(), ATTACK, EPS).warnings == ()
