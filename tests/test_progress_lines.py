"""The progress lines of an evaluation: true under several processes, written to a log as
they come, "nothing left to attack" where nothing was, and bars named after their attack."""

from __future__ import annotations

import io
import re
import sys
import types

import pytest
import torch

from signattack import FABT, FGSM, IteratedSign, Square
from signattack._progress import Stages
from signattack.evaluation import evaluate, sweep
from signattack.evaluation.distributed import Ranks

STAGE = re.compile(
    r"^eps (?P<eps>\S+), (?P<attack>[^:]+): (?P<did>broke \d+ of \d+|nothing left to attack); "
    r"(?P<where>on this process \(\d+ of \d+\): )?robust accuracy so far [\d.]+% "
    r"\((?P<robust>\d+) of (?P<seen>\d+)\); batch (?P<batch>\d+) of (?P<batches>\d+); "
    r"\d[^;]* spent, (about \d.* left|done)$"
)


def _problem(samples: int = 8, classes: int = 3):
    """A linear model on ``[0, 1]`` inputs and the labels it predicts: every sample clean."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(classes, 4, generator=generator)
    model = torch.nn.Linear(4, classes, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    x = torch.rand(samples, 4, generator=generator)
    return model.eval(), x, (x @ weight.T).argmax(1)


def _stages(err: str) -> list[re.Match[str]]:
    return [match for line in err.splitlines() if (match := STAGE.match(line))]


class _Gathered(Exception):
    """The process reached the gathering of every process's results."""


def _as_process(monkeypatch, rank: int, world: int) -> None:
    """``evaluate`` runs as process ``rank`` of ``world`` under ``torchrun``, up to the
    gathering of the results (where ``torch.distributed`` would wait for the others)."""

    class Shard(Ranks):
        def gather(self, payload):
            raise _Gathered

    class Launched:
        @classmethod
        def current(cls) -> Ranks:
            return Shard(rank, world)

    monkeypatch.setattr(sweep, "Ranks", Launched)


# -- several processes -------------------------------------------------------------------


def test_the_first_process_numbers_its_own_batches_and_says_whose_counts(monkeypatch, capsys):
    model, x, y = _problem(8)
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)]  # 4 batches, 2 each
    attacks = [FGSM(0.0, bounds=(0, 1)), IteratedSign(0.0, 2, bounds=(0, 1))]
    _as_process(monkeypatch, 0, 2)
    with pytest.raises(_Gathered):
        evaluate(model, batches, attacks, [0.05, 0.5], progress=True)
    lines = _stages(capsys.readouterr().err)
    assert len(lines) == 2 * 2 * 2  # its 2 batches (0 and 2), 2 radii, 2 attacks
    assert {m["where"] for m in lines} == {"on this process (1 of 2): "}
    assert {m["batches"] for m in lines} == {"2"}
    assert [m["batch"] for m in lines] == ["1"] * 4 + ["2"] * 4  # never "batch 3 of 2"
    assert {m["seen"] for m in lines} == {"2", "4"}  # its own samples, 2 a batch
    assert all(int(m["robust"]) <= int(m["seen"]) for m in lines)


def test_only_the_first_process_speaks(monkeypatch, capsys):
    model, x, y = _problem(8)
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)]
    _as_process(monkeypatch, 1, 2)
    with pytest.raises(_Gathered):
        evaluate(model, batches, FGSM(0.0, bounds=(0, 1)), [0.05], progress=True)
    assert capsys.readouterr().err == ""


def test_a_stage_line_says_whose_counts_and_never_a_batch_past_the_count():
    from signattack.evaluation._batch import stage_text

    alone = stage_text("0.1", "FGSM", (1, 4), (3, 4), (2, 2), Ranks(0, 1))
    expected = "eps 0.1, FGSM: broke 1 of 4; robust accuracy so far 75.0% (3 of 4); batch 2 of 2"
    assert alone == expected
    shared = stage_text("0.1", "FGSM", (1, 4), (3, 4), (2, 2), Ranks(0, 2))
    assert "on this process (1 of 2): robust accuracy so far 75.0% (3 of 4)" in shared
    assert shared.endswith("batch 2 of 2")
    unknown = stage_text("0.1", "FGSM", (1, 4), (3, 4), (5, None), Ranks(0, 1))
    assert unknown.endswith("batch 5")


# -- nothing left to attack --------------------------------------------------------------


def test_an_attack_with_nothing_left_to_attack_says_so(capsys):
    from signattack.evaluation._batch import stage_text

    model, x, y = _problem(4)
    wrong = (y + 1) % 3  # every sample misclassified: nothing to attack
    attacks = [FGSM(0.0, bounds=(0, 1)), IteratedSign(0.0, 2, bounds=(0, 1))]
    evaluate(model, [(x, wrong)], attacks, [0.1], progress=True)
    err = capsys.readouterr().err
    lines = _stages(err)
    assert [m["did"] for m in lines] == ["nothing left to attack"] * 2
    assert "broke 0 of 0" not in err
    assert stage_text("1", "FGSM", (0, 0), (0, 4), (1, 1), Ranks(0, 1)).startswith(
        "eps 1, FGSM: nothing left to attack; robust accuracy so far 0.0% (0 of 4)"
    )


# -- a log or a pipe ---------------------------------------------------------------------


class _Log(io.StringIO):
    """stderr redirected to a file: no terminal; remembers what each flush wrote out."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_the_batch_count_of_several_processes_says_it_counts_them_all(monkeypatch):
    from signattack import _progress

    monkeypatch.setattr(_progress, "INTERVAL", 0.0)  # every run counts as long
    log = _Log()
    monkeypatch.setattr(sys, "stderr", log)
    model, x, y = _problem(6)
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 6, 2)]  # 3 batches over 2
    _as_process(monkeypatch, 0, 2)
    with pytest.raises(_Gathered):
        evaluate(model, batches, FGSM(0.0, bounds=(0, 1)), [0.05])
    counted = [line for line in log.getvalue().splitlines() if "batches done" in line]
    assert counted, log.getvalue()
    assert all(line.startswith("evaluating on 2 processes: ") for line in counted), counted


def test_a_log_gets_every_attacks_line_flushed_as_it_comes(monkeypatch):
    from signattack import _progress

    monkeypatch.setattr(_progress, "INTERVAL", 0.0)  # every run counts as long
    log = _Log()
    monkeypatch.setattr(sys, "stderr", log)
    model, x, y = _problem(6)
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    attacks = [FGSM(0.0, bounds=(0, 1)), IteratedSign(0.0, 2, bounds=(0, 1))]
    evaluate(model, batches, attacks, [0.05, 0.5])  # progress by default
    text = log.getvalue()
    lines = _stages(text)
    assert len(lines) == 2 * 2 * 2  # per batch, radius and attack
    assert all(m.group(0).endswith("left") for m in lines[:-1])  # with the time left
    assert lines[-1].group(0).endswith("done")
    assert "\r" not in text  # no bar
    for m in lines:  # each line was flushed out before the next was written
        assert any(shown.endswith(m.group(0) + "\n") for shown in log.flushed), m.group(0)


def test_a_log_holds_the_lines_back_until_the_run_is_long_then_writes_them_all(monkeypatch):
    from signattack import _progress

    clock = [0.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: clock[0])
    log = _Log()
    monkeypatch.setattr(sys, "stderr", log)
    stages = Stages(None)
    stages.done("first", 1, 3)
    assert log.getvalue() == ""  # a run that ends now stays silent
    clock[0] = _progress.INTERVAL
    stages.done("second", 2, 1)
    clock[0] = _progress.INTERVAL * 2
    stages.done("third", 3, 0)
    written = log.getvalue().splitlines()
    assert [line.split(";")[0] for line in written] == ["first", "second", "third"]
    assert written[1].endswith("left")
    assert written[2].endswith("done")


def test_quiet_is_silent_in_a_log_and_in_a_notebook(monkeypatch, capsys):
    from signattack import _progress

    monkeypatch.setattr(_progress, "INTERVAL", 0.0)
    model, x, y = _problem(4)
    attacks = [FGSM(0.0, bounds=(0, 1)), Square(0.0, queries=5, bounds=(0, 1), seed=0)]
    evaluate(model, [(x, y)], attacks, [0.05], progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setattr(_progress, "STEP_BAR_DELAY", 0.0)
    evaluate(model, [(x, y)], attacks, [0.05], progress=False)
    assert capsys.readouterr().err == ""


# -- the bars of an attack's steps -------------------------------------------------------


@pytest.fixture
def bars(monkeypatch) -> list[tuple[str, str]]:
    """In a notebook, with bars shown at once: the (label, unit) of every bar made."""
    from signattack import _progress

    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setattr(_progress, "STEP_BAR_DELAY", 0.0)
    made: list[tuple[str, str]] = []

    def bar(items, *, desc, unit, total=None, **options):
        made.append((desc, unit))
        return items

    tqdm_auto = types.ModuleType("tqdm.auto")
    tqdm_auto.tqdm = bar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm.auto", tqdm_auto)
    return made


def test_fab_t_names_each_targets_bar(bars):
    model, x, y = _problem(4, classes=3)
    attack = FABT(0.0, steps=2, target_classes=2, bounds=(0, 1))
    evaluate(model, [(x, y)], attack, [1e-4], progress=True)  # a ball too small to leave
    steps = [label for label, unit in bars if unit == "steps"]
    assert steps == ["FAB-T target 1 of 2", "FAB-T target 2 of 2"]


def test_fab_t_names_the_restart_where_there_are_several(bars):
    model, x, y = _problem(4, classes=3)
    attack = FABT(0.0, steps=2, target_classes=1, restarts=2, bounds=(0, 1), seed=0)
    evaluate(model, [(x, y)], attack, [1e-4], progress=True)
    steps = [label for label, unit in bars if unit == "steps"]
    assert steps == ["FAB-T target 1 of 1, restart 1 of 2", "FAB-T target 1 of 1, restart 2 of 2"]


def test_square_counts_its_queries_and_other_attacks_name_their_steps(bars):
    model, x, y = _problem(4)
    attacks = [IteratedSign(0.0, 2, bounds=(0, 1)), Square(0.0, queries=5, bounds=(0, 1), seed=0)]
    evaluate(model, [(x, y)], attacks, [1e-4], progress=True)
    shown = [made for made in bars if made[1] != "batches"]
    assert shown == [("IteratedSign steps", "steps"), ("Square queries", "queries")]


def test_apgd_t_names_each_targets_bar(bars):
    from signattack import APGDT

    model, x, y = _problem(4, classes=5)
    attack = APGDT(0.0, steps=2, target_classes=3, bounds=(0, 1))
    evaluate(model, [(x, y)], attack, [1e-4], progress=True)  # a ball too small to leave
    steps = [label for label, unit in bars if unit == "steps"]
    assert steps == ["APGD-T target 1 of 3", "APGD-T target 2 of 3", "APGD-T target 3 of 3"]
