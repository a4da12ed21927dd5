"""What a notebook shows: figures as images by themselves, results as short reprs and
tables, never array dumps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signattack import APGD, FABT, IteratedSign, Square, param_groups, parameter_table
from signattack.evaluation import evaluate
from signattack.plots import plot_gradient_maps, plot_loss_trace
from signattack.probes import input_gradient

PNG = b"\x89PNG\r\n\x1a\n"


def _problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    ).eval()
    x = torch.rand(64, 1, 8, 8) * 255
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_figures_show_as_images_by_themselves_and_are_still_figures():
    from matplotlib.figure import Figure

    model, x, y = _problem()
    result = IteratedSign(8, 3).run(model, x, y)
    for figure in (
        plot_loss_trace(result.losses),
        plot_gradient_maps(x[:4], input_gradient(model, x[:4], y[:4])),
    ):
        assert isinstance(figure, Figure)
        assert figure._repr_png_().startswith(PNG)
    report = evaluate(model, [(x, y)], APGD(0, 2, seed=0), [4.0])
    assert report.plot()._repr_png_().startswith(PNG)


@pytest.mark.parametrize(
    "attack",
    [IteratedSign(8, 3), Square(8, 20, seed=0), FABT(8, 3, target_classes=2)],
    ids=["iterated", "square", "fab-t"],
)
def test_an_attack_result_reads_as_a_summary_not_its_arrays(attack):
    model, x, y = _problem()
    result = attack.run(model, x, y)
    text = repr(result)
    assert text.startswith("AttackResult(")
    assert "tensor(" not in text
    assert len(text) < 300
    assert "(64, 1, 8, 8)" in text
    assert f"{float(result.success.float().mean()):.1%}" in text
    html = result._repr_html_()
    assert html.startswith("<table>")
    assert "success" in html
    if isinstance(attack, Square):
        assert "queries" in text
    if isinstance(attack, FABT):
        assert "median distance found" in text


def test_a_report_reads_as_its_table():
    model, x, y = _problem()
    report = evaluate(model, [(x, y)], APGD(0, 2, seed=0), [4.0, 8.0])
    text = repr(report)
    assert text.startswith("RobustnessReport(64 samples, clean ")
    assert len(text) < 200
    markdown = report._repr_markdown_()
    assert markdown.startswith("| eps | accuracy |")
    assert "- attacks: APGD" in markdown


def test_parameter_groups_and_tables_read_as_counts():
    model, _, _ = _problem()
    groups = param_groups(model)
    text = repr(groups)
    assert text == (
        "ParamGroups(bn_affine: 2 tensors, 8; biases: 2 tensors, 14; weights: 2 tensors, 2,596)"
    )
    assert "Parameter containing" not in text
    assert groups._repr_html_().count("<tr>") == 4
    table = parameter_table(model)
    assert repr(table).startswith("ParameterTable(6 tensors in 3 layers: bn_affine 8,")
    html = table._repr_html_()
    assert html.count("<tr>") == 1 + 3
    assert "2,618" in html


def test_html_cells_are_escaped():
    from signattack._io import html_table

    html = html_table(["a<b"], [["<script>"]])
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert np.char.count(html, "<tr>") == 2


def test_each_gradient_map_has_its_own_scale_and_a_blank_one_says_why():
    """A confidently correct image's gradient is orders smaller than a wrong one's: on one
    shared scale it shows as blank. Each map fills its own scale; an all-zero map says so."""
    images = np.full((3, 1, 4, 4), 128.0)
    rng = np.random.default_rng(0)
    large = rng.normal(size=(1, 4, 4))
    gradients = np.stack([large, large * 1e-6, np.zeros((1, 4, 4))])
    figure = plot_gradient_maps(images, gradients)
    maps = [ax for ax in figure.axes if ax.images and ax.images[0].get_cmap().name == "RdBu_r"]
    assert len(maps) == 3
    for ax in maps[:2]:
        image = ax.images[0]
        shown = np.abs(2 * np.asarray(image.norm(image.get_array())) - 1)
        assert shown.max() == pytest.approx(1.0)  # the map reaches the ends of its scale
    assert [text.get_text() for text in maps[2].texts] == ["gradient is zero:\nflat loss here"]
    assert not maps[0].texts
    assert not maps[1].texts
