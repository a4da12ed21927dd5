"""The documentation: API coverage, a strict build, runnable code blocks, a real browser."""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
from conftest import HANG_LIMIT

import signattack
import signattack.attacks
import signattack.backends
import signattack.core
import signattack.evaluation
import signattack.probes

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGES = [
    page
    for page in sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
    if PYTHON_BLOCK.search(page.read_text())
]


def _documented() -> set[str]:
    names = set()
    for page in (DOCS / "api").glob("*.md"):
        names |= set(re.findall(r"^::: ([\w.]+)$", page.read_text(), re.MULTILINE))
    return names


@pytest.mark.parametrize(
    "module",
    [
        signattack,
        signattack.attacks,
        signattack.backends,
        signattack.core,
        signattack.evaluation,
        signattack.probes,
    ],
    ids=lambda module: module.__name__,
)
def test_every_public_name_is_in_the_api_reference(module):
    documented = _documented()
    short = {name.rsplit(".", 1)[-1] for name in documented}
    missing = [
        name
        for name in module.__all__
        if name != "__version__"
        and f"{module.__name__}.{name}" not in documented
        and not (module is not signattack and name in short)
    ]
    assert not missing, f"not in docs/api: {missing}"


def _public_modules() -> list[str]:
    """Every module of the package that is not private (no part starts with ``_``) and not
    a command line's (its interface is the command, documented with the evaluation)."""
    import pkgutil

    return [
        info.name
        for info in pkgutil.walk_packages(signattack.__path__, "signattack.")
        if not any(part.startswith("_") for part in info.name.split("."))
        and info.name not in ("signattack.cli", "signattack.evaluate_cli", "signattack.verify_cli")
    ]


def test_what_a_module_exports_is_documented():
    """A name in any public module's ``__all__`` is an object the API reference shows (under
    whichever face), so that nothing is public by module path alone."""
    import importlib

    shown = set()
    for dotted in _documented():
        module_name, _, attribute = dotted.rpartition(".")
        shown.add(id(getattr(importlib.import_module(module_name), attribute)))
    undocumented = [
        f"{name}.{exported}"
        for name in _public_modules()
        for exported in importlib.import_module(name).__all__
        if id(getattr(importlib.import_module(name), exported)) not in shown
    ]
    assert not undocumented, f"exported but not in docs/api: {undocumented}"


def test_api_reference_names_resolve():
    import importlib

    for dotted in _documented():
        module_name, _, attribute = dotted.rpartition(".")
        module = importlib.import_module(module_name)
        assert hasattr(module, attribute), dotted


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, monkeypatch):
    blocks = PYTHON_BLOCK.findall(page.read_text())
    # A module of its own, as a script has: dataclasses look their module up by name.
    module = types.ModuleType("__docs__")
    monkeypatch.setitem(sys.modules, "__docs__", module)
    for block in blocks:
        exec(compile(block, str(page), "exec"), module.__dict__)


@functools.cache
def _site(tmp_root: str) -> Path:
    site = Path(tmp_root) / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install -e '.[docs]'")
    return _site(str(tmp_path_factory.mktemp("docs")))


@pytest.mark.slow
def test_strict_build_writes_every_page(site):
    for page in ["index.html", "api/attacks/index.html", "benchmarks/index.html"]:
        assert (site / page).is_file(), page
    assert "IteratedSign" in (site / "api/attacks/index.html").read_text()
    benchmarks = (site / "benchmarks/index.html").read_text()
    assert "signattack IteratedSign" in benchmarks
    assert "evaluate + early_stop" in benchmarks


_CODE = re.compile(r"<(pre|code)\b.*?</\1>", re.DOTALL)
_RAW = {
    "inline LaTeX": re.compile(r"\\\("),
    "display LaTeX": re.compile(r"\\\["),
    "a benchmark marker": re.compile(r"\{\{ ?benchmark"),
    "a Sphinx role": re.compile(r":(class|func|meth|attr|data|mod|exc|obj|ref):"),
    "a doctest as a block quote": re.compile(
        r"<blockquote>\s*<blockquote>|<blockquote>\s*<p>&gt;&gt;"
    ),
    "a reStructuredText literal": re.compile(r"``"),
}

_MATH = re.compile(r"<math\b.*?</math>", re.DOTALL)
_TEX_COMMAND = re.compile(r"\\[A-Za-z]+|\\[|{}]")
"""A TeX command (``\\arg``, ``\\|``) that the maths converter left in the MathML as text."""


def raw_markup(page: str) -> list[str]:
    """What of the sources' markup reached a built page as text (outside code): also a
    double backtick that did not become code (a span broken where a docstring section
    starts a new item), and a TeX command inside ``<math>``."""
    prose = _CODE.sub("", page)
    found = [what for what, pattern in _RAW.items() if pattern.search(prose)]
    if any(_TEX_COMMAND.search(math) for math in _MATH.findall(page)):
        found.append("a TeX command in MathML")
    if _RETURNED_SENTENCE.search(page):
        found.append("a sentence read as a returned name")
    return found


# A Returns section whose first word mkdocstrings took for the returned value's name.
_RETURNED_SENTENCE = re.compile(r"<td><code>(The|A|An|Per|One|Every|Whether)</code></td>")


def test_the_raw_markup_check_finds_what_it_looks_for():
    assert raw_markup("<p>\\(x\\)</p>") == ["inline LaTeX"]
    assert raw_markup('<p>{{ benchmark "x.json" }}</p>') == ["a benchmark marker"]
    assert raw_markup("<blockquote><blockquote><p>attack</p></blockquote></blockquote>")
    assert raw_markup("<pre><code>\\(x\\) {{ benchmark }}</code></pre>") == []
    assert raw_markup("<p>See :class:<code>Batch</code>.</p>") == ["a Sphinx role"]
    assert raw_markup("<td><code>The</code></td>") == ["a sentence read as a returned name"]
    assert raw_markup("<td>``AttackSuite(&quot;rand&quot;, [APGD(0,</td>") == [
        "a reStructuredText literal"
    ]
    assert raw_markup("<p>A <code>``x``</code> in code</p>") == []
    tex = ["a TeX command in MathML"]
    assert raw_markup('<math><mo minsize="1.6em">\\|</mo></math>') == tex
    assert raw_markup("<math><mi>\\arg</mi><mo>min</mo></math>") == tex
    assert raw_markup("<math><mo>&#x02016;</mo><mi>arg</mi></math>") == []


@pytest.mark.slow
def test_no_raw_markup_reaches_the_site(site):
    found = {
        str(page.relative_to(site)): raw_markup(page.read_text()) for page in site.rglob("*.html")
    }
    assert not {page: what for page, what in found.items() if what}


@pytest.mark.slow
def test_zensical_builds_the_same_sources(tmp_path):
    """mkdocs-material's successor reads mkdocs.yml but runs no MkDocs hooks: the maths and
    the benchmark tables come from the repository's Markdown extension, which it runs."""
    pytest.importorskip("zensical", reason="Zensical is not installed here")
    for part in ("docs", "src", "tools", "mkdocs.yml", "README.md", "CHANGELOG.md"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / part)
    subprocess.run(
        [sys.executable, "-m", "zensical", "build", "--strict"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=HANG_LIMIT,
    )
    site = tmp_path / "site"
    pages = list(site.rglob("*.html"))
    assert len(pages) > 30
    assert not {p.name: raw_markup(p.read_text()) for p in pages if raw_markup(p.read_text())}
    assert (site / "concepts/apgd/index.html").read_text().count("<math") >= 10
    assert "FAB-T" in (site / "benchmarks/index.html").read_text()


@pytest.mark.slow
def test_the_docstring_example_renders_as_code(site):
    page = (site / "api/attacks/index.html").read_text()
    start = page.index("<summary>Example</summary>")
    example = page[start : page.index("</details>", start)]
    assert "<pre>" in example
    assert "<blockquote>" not in example
    assert "run" in re.sub(r"<[^>]+>", "", example)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium: apt-get install chromium")
@pytest.mark.parametrize(
    ("page", "title"), [("", "signattack"), ("api/attacks/", "Attacks - signattack")]
)
def test_pages_render_in_a_real_browser(site, page, title, tmp_path):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    with _serve(site) as url:
        dom = subprocess.run(
            [_chromium(), *flags, "--dump-dom", f"{url}/{page}"],
            capture_output=True,
            text=True,
            timeout=HANG_LIMIT,
            check=True,
        ).stdout
        subprocess.run(
            [_chromium(), *flags, f"--screenshot={tmp_path / 'page.png'}", f"{url}/{page}"],
            capture_output=True,
            timeout=HANG_LIMIT,
            check=True,
        )
    assert f"<title>{title}</title>" in dom
    assert 'class="md-nav' in dom, "navigation did not render"
    assert 'class="md-search__input' in dom, "search box did not render"
    assert "md-content" in dom
    assert (tmp_path / "page.png").read_bytes().startswith(b"\x89PNG")


_MATH_PROBE = """<!doctype html><html><body>
<iframe id="page" src="/concepts/apgd/" width="1200" height="900"></iframe>
<script>
document.getElementById("page").onload = () => {
  const doc = document.getElementById("page").contentDocument;
  const boxes = [...doc.querySelectorAll("math")].map(m => m.getBoundingClientRect());
  const fraction = doc.querySelector("mfrac");
  const [top, bottom] = [...fraction.children].map(e => e.getBoundingClientRect());
  document.body.setAttribute("data-math", JSON.stringify({
    formulas: boxes.length,
    laid_out: boxes.filter(b => b.width > 0 && b.height > 0).length,
    fraction_stacked: top.bottom <= bottom.top + 1,
    scripts: doc.querySelectorAll("script[src*='mathjax'], script[src*='katex']").length,
  }));
};
</script></body></html>"""


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium: apt-get install chromium")
def test_math_is_typeset_by_the_browser_without_network(site, tmp_path):
    (site / "math-probe.html").write_text(_MATH_PROBE)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with _serve(site) as url:
        dom = subprocess.run(
            [
                _chromium(),
                *flags,
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                f"{url}/math-probe.html",
            ],
            capture_output=True,
            text=True,
            timeout=HANG_LIMIT,
            check=True,
        ).stdout
    found = re.search(r"data-math=\"([^\"]*)\"", dom)
    assert found, "the probe page did not measure the math"
    measured = json.loads(html.unescape(found.group(1)))
    assert measured["formulas"] >= 10
    assert measured["laid_out"] == measured["formulas"]
    assert measured["fraction_stacked"], "MathML fractions are not laid out as fractions"
    assert measured["scripts"] == 0  # no MathJax or KaTeX: nothing to fetch


def _cost_suite(robust: float, per_member: dict[str, tuple[int, int]], seconds: float):
    """One suite's record in a cost report: per member (forward-equivalents, samples
    handed), 10 samples a run; the totals are the members' sums."""
    total = sum(passes for passes, _ in per_member.values())
    return {
        "robust": robust,
        "forward_equivalents": total,
        "per_sample": total / 10,
        "seconds": seconds,
        "only_ours_breaks": 2,
        "only_theirs_breaks": 1,
        "time_ratio": 99.0,  # stated, not recomputed: the report's own measurement
        "members": {
            name: {"forward_equivalents": passes, "samples_handed": handed}
            for name, (passes, handed) in per_member.items()
        },
    }


def _cost_run(seed: int, apgd_t: tuple[int, int]):
    return {
        "network": "tiny",
        "clean": 0.9,
        "eps": 16.0,
        "seed": seed,
        "authors": _cost_suite(
            0.5, {"evaluation": (20, 0), "APGD-CE": (300, 10), "APGD-T": apgd_t}, 1.0
        ),
        "standard": _cost_suite(0.4, {"evaluation": (30, 0), "APGD-CE": (270, 10)}, 2.0),
        "fast": _cost_suite(0.4, {"evaluation": (30, 0), "Square probe": (50, 5)}, 0.5),
    }


def test_a_cost_report_renders_its_ratios_and_its_members_per_attacked_sample(
    tmp_path, monkeypatch
):
    """The cost layout wins over the parity rows the same file carries; each suite's
    forward-equivalents a sample come with their ratio to the authors', and a member's cost
    is its passes over the samples it attacked, summed over the runs (not a mean of ratios)."""
    markdown = pytest.importorskip("markdown")
    pytest.importorskip("latex2mathml")
    monkeypatch.syspath_prepend(str(ROOT))
    from tools.signattack_markdown import SignattackDocs

    report = {
        "cost": True,
        "parity": True,
        "device": "cpu",
        "threads": 1,
        "torch": "2",
        "samples": 10,
        "seeds": [0, 1],
        "complete": True,
        "counts_agree": True,
        "rows": [{"attack": "standard suite: 1 vs 2 forward-equivalents a sample"}],
        "runs": [_cost_run(0, (200, 4)), _cost_run(1, (600, 8))],
    }
    (tmp_path / "cost.json").write_text(json.dumps(report))
    page = markdown.markdown(
        '{{ benchmark "cost.json" }}',
        extensions=["tables", SignattackDocs(docs_dir=str(tmp_path))],
    )
    rows = [
        [html.unescape(cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", page, re.DOTALL)
    ]
    assert "forward-equivalents a sample" not in page  # not the parity layout's cell
    runs = [row for row in rows if row[0] == "tiny"]
    authors_per_sample = [(20 + 300 + 200) / 10, (20 + 300 + 600) / 10]
    for row, authors in zip(runs, authors_per_sample, strict=True):
        assert row[4:7] == ["50.0%", "40.0%", "40.0%"]  # robust: authors', standard, fast
        assert row[7:9] == ["2 / 1", "2 / 1"]  # broken by signattack only / authors' only
        assert row[9] == f"{authors:,.0f}"
        assert row[10] == f"30 ({30 / authors:.2f}x)"
        assert row[11] == f"8 ({8 / authors:.2f}x)"
        assert row[12] == "99.00x / 99.00x"
    members = {row[0]: row[1:] for row in rows if len(row) == 4 and row[0] != "member"}
    assert members["APGD-CE"] == ["30", "27", ""]
    assert members["APGD-T"] == [f"{800 / 12:,.0f}", "", ""]  # 67, not (50 + 75) / 2
    assert members["Square probe"] == ["", "", "10"]
    assert members["evaluation"] == ["2.0", "3.0", "3.0"]  # per sample evaluated
    assert list(members)[-1] == "evaluation"
