"""The maths of the docs pages: every formula becomes MathML that a browser lays out, with
no TeX command left in it as text (``\\Big\\|`` once showed as ``\\|``, ``\\arg`` as
``\\arg``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

markdown = pytest.importorskip("markdown")
pytest.importorskip("latex2mathml", reason="needs the docs extra: pip install -e '.[docs]'")
pytest.importorskip("pymdownx")

from tools.signattack_markdown import SignattackDocs  # noqa: E402

PAGES = [page for page in sorted((ROOT / "docs").rglob("*.md")) if "$" in page.read_text()]
_MATH = re.compile(r"<math\b.*?</math>", re.DOTALL)
_TEX_COMMAND = re.compile(r"\\[A-Za-z]+|\\[|{}]")


def _html(text: str) -> str:
    return markdown.markdown(
        text,
        extensions=[
            "tables",
            "pymdownx.superfences",
            "pymdownx.arithmatex",
            SignattackDocs(docs_dir=str(ROOT / "docs")),
        ],
        extension_configs={"pymdownx.arithmatex": {"generic": True}},
    )


def _left_as_tex(html: str) -> list[str]:
    return [hit for math in _MATH.findall(html) for hit in _TEX_COMMAND.findall(math)]


@pytest.mark.parametrize(
    ("formula", "wanted"),
    [
        (r"\Big\|\nabla L\Big(\frac{w}{\|w\|}\Big)\Big\|", "&#x02016;"),
        (r"\arg\min_{p} \|p - v\|_2", "<mi>arg</mi>"),
        (r"\big\langle x, y \big\rangle", "&#x027E8;"),
        (r"\Bigl\lvert x \Bigr\rvert", "|"),
    ],
)
def test_sized_delimiters_and_arg_become_characters(formula, wanted):
    html = _html(f"$$\n{formula}\n$$\n\nand inline ${formula}$.")
    assert html.count("<math") == 2
    assert not _left_as_tex(html), html
    assert wanted in html


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_no_formula_of_the_docs_leaves_tex_in_its_mathml(page):
    assert not _left_as_tex(_html(page.read_text()))


def test_a_command_the_converter_does_not_know_stops_the_build():
    with pytest.raises(ValueError, match=r"\\\\notacommand"):
        _html("$$\n\\notacommand x\n$$")
