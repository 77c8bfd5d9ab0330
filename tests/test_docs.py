"""The documentation: every Python block of README.md and of the site's pages runs, the README keeps
its quick start, and the site (mkdocs.yml) covers every page and builds in strict mode."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)

#: The pages of mkdocs.yml's nav, in order (``- Title: page.md`` or ``- page.md`` lines after ``nav:``).
NAV_PAGE = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?(?!\w+://)(\S+\.md)\s*$", re.M)
NAV = NAV_PAGE.findall((ROOT / "mkdocs.yml").read_text().partition("\nnav:\n")[2])
#: ``::: identifier`` blocks of the reference pages, with their indented option lines.
DIRECTIVE = re.compile(r"^::: (?P<identifier>\S+)\n(?P<options>(?:[ \t]+\S.*\n?)*)", re.M)
REFERENCE = {page: list(DIRECTIVE.finditer(page.read_text())) for page in sorted((DOCS / "reference").glob("*.md"))}


def _blocks():
    for page in [ROOT / "README.md", *(DOCS / name for name in NAV if (DOCS / name).is_file())]:
        for number, match in enumerate(BLOCK.finditer(page.read_text()), start=1):
            code = match.group(1)
            missing = [
                extra
                for extra, module in OPTIONAL
                if _imports(code, module) and importlib.util.find_spec(module) is None
            ]
            marks = (
                [pytest.mark.skip(reason=f'needs the extra: pip install "torch-lottery[{missing[0]}]"')]
                if missing
                else []
            )
            yield pytest.param(code, id=f"{page.relative_to(ROOT)}#{number}", marks=marks)


#: Optional extras a docs block may import: (extra, module). Such a block is skipped where it is not installed.
OPTIONAL = (("lightning", "lightning"), ("tensorboard", "tensorboard"))


def _imports(code: str, module: str) -> bool:
    return re.search(rf"^(?:import|from) {module}\b", code, re.M) is not None


@pytest.mark.parametrize("code", list(_blocks()))
def test_python_block_runs(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_every_page_has_a_python_block():
    """README.md and every docs/*.md page (docs/index.md included) carry at least one runnable example."""
    assert len(PAGES) > 1, "docs/*.md matched no page"
    missing = [str(page.relative_to(ROOT)) for page in PAGES if not BLOCK.search(page.read_text())]
    assert not missing, f"pages without a runnable ```python example: {missing}"


def test_readme_starts_with_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    first = re.search(r"^```sh\n(.*?)^```$", text, re.S | re.M)
    assert first is not None, "README.md needs a ```sh block with the quick-start commands"
    commands = [line for line in first.group(1).splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("torch-lottery run")
    assert commands[1].endswith("pytest")
    assert text.index(first.group(0)) < text.index("## In your own code")


# -- the site -------------------------------------------------------------------------------
def test_the_nav_lists_every_page_once_and_only_pages_that_exist():
    """Each Markdown file under docs/ is a page of mkdocs.yml's nav (its group decides where readers find it)."""
    assert "index.md" in NAV and "reference/index.md" in NAV
    pages = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))
    assert not [name for name in NAV if name not in pages], "the nav names pages that do not exist"
    assert not [page for page in pages if page not in NAV], "add these docs pages to mkdocs.yml's nav"
    assert len(NAV) == len(set(NAV)), "a page is listed twice in the nav"


def _resolve(identifier: str):
    """The object ``identifier`` (``package.module.name.attr``) names, importing the longest module prefix."""
    parts = identifier.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(identifier)


def test_every_reference_identifier_imports():
    identifiers = [match["identifier"] for matches in REFERENCE.values() for match in matches]
    assert identifiers and all(page.relative_to(DOCS).as_posix() in NAV for page in REFERENCE)
    for identifier in identifiers:
        _resolve(identifier)  # raises naming the identifier that moved or was renamed


def test_the_reference_documents_every_public_name():
    """Every subpackage the root exposes has a module reference, and every root name is documented there."""
    import torch_lottery

    directives = [match for matches in REFERENCE.values() for match in matches]
    rendered = {match["identifier"] for match in directives}
    missing = [name for name in torch_lottery._SUBMODULES if f"torch_lottery.{name}" not in rendered]
    assert not missing, f"subpackages without a reference page: {missing}"
    modules = {  # rendered with their members (no ``members: false``)
        match["identifier"] for match in directives if not re.search(r"^\s+members:\s*false$", match["options"], re.M)
    }
    documented = {id(getattr(_resolve(m), name)) for m in modules for name in getattr(_resolve(m), "__all__", ())}
    public = [name for name in torch_lottery.__all__ if not name.startswith("_")]
    undocumented = [name for name in public if id(getattr(torch_lottery, name)) not in documented]
    assert not undocumented, f"root names no reference page documents: {undocumented}"


# -- the site's griffe extension (docs/_mkdocs/sphinx_roles.py) -----------------------------
def _extension():
    griffe = pytest.importorskip("griffe", reason="the docs extra is not installed")
    spec = importlib.util.spec_from_file_location("sphinx_roles", DOCS / "_mkdocs" / "sphinx_roles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return griffe, module


def test_sphinx_roles_become_cross_references_or_code():
    _, roles = _extension()
    paths = {"find_ticket": "torch_lottery.driver.find_ticket", "torch_lottery.Ticket": "torch_lottery.Ticket"}
    source = ":func:`find_ticket`, :class:`~torch_lottery.Ticket`, :math:`|w|`, :exc:`KeyError`"
    text = roles.rewrite_roles(source, paths.get)
    assert text == (
        '<autoref identifier="torch_lottery.driver.find_ticket" optional><code>find_ticket</code></autoref>, '
        '<autoref identifier="torch_lottery.Ticket" optional><code>Ticket</code></autoref>, `|w|`, `KeyError`'
    )


def test_the_extension_reads_comments_and_warns_of_dangling_roles(tmp_path, caplog):
    griffe, roles = _extension()
    package = tmp_path / "torch_lottery"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""Summary.\n\nUse :func:`helper`, not :func:`torch_lottery.gone` or :func:`_private`; :data:`LIMIT`::\n\n'
        '    helper()\n"""\n\n'
        "#: The largest size,\n#: in bytes.\nLIMIT = 3\n\n\ndef helper():\n    pass\n\n\ndef _private():\n    pass\n"
    )
    with caplog.at_level(logging.WARNING):
        extensions = griffe.load_extensions(roles.SphinxConventions)
        pkg = griffe.load("torch_lottery", search_paths=[tmp_path], extensions=extensions, try_relative_path=False)
    assert pkg["LIMIT"].docstring.value == "The largest size,\nin bytes."
    text = pkg.docstring.value
    assert '<autoref identifier="torch_lottery.helper" optional><code>helper</code></autoref>' in text
    assert "`torch_lottery.gone`" in text and "`_private`" in text
    assert text.endswith("<code>LIMIT</code></autoref>:\n\n    helper()")
    dangling = [record.getMessage() for record in caplog.records if "names nothing" in record.getMessage()]
    assert len(dangling) == 1 and dangling[0].endswith(":1: 'torch_lottery.gone' names nothing in torch_lottery")


@pytest.mark.slow
def test_the_site_builds_in_strict_mode(tmp_path):
    """``mkdocs build --strict``: no broken link or anchor, no page left out, every cross-reference found."""
    for module in ("mkdocs", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs extra is not installed")
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "reference" / "driver" / "index.html").read_text()
    assert 'id="torch_lottery.driver.find_ticket"' in page
