"""Every Python block of README.md and docs/*.md runs, and the README keeps its quick start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _blocks():
    for page in PAGES:
        for number, match in enumerate(BLOCK.finditer(page.read_text()), start=1):
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}#{number}")


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
