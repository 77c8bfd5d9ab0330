"""Griffe extension for the documentation site: the package's Sphinx-flavoured docstrings as Markdown.

mkdocstrings renders docstrings as Markdown; the package's docstrings also use two Sphinx
conventions, which this extension translates once the package is loaded, before any docstring is
parsed:

- roles (:func:`find_ticket`, :class:`~torch_lottery.RewindPoint`, :data:`CRITERIA`) become
  cross-references to the object the name resolves to, as Python resolves it from the docstring's
  scope; the link is made where that object is rendered on the site, plain code elsewhere. A role
  whose name resolves into the package but to nothing there is a warning (an error under
  ``mkdocs build --strict``). Roles naming builtins or other libraries, and ``:math:``, stay code.
- ``#:`` comments above an assignment become that attribute's docstring, and a paragraph ending
  in ``::`` (a literal block follows) ends in ``:``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import griffe

PACKAGE = "torch_lottery"
ROLE = re.compile(r":(?P<role>[a-z]+):`(?P<tilde>~?)(?P<target>[^`]+)`")
COMMENT = "#:"
LITERAL = re.compile(r"::$", re.M)


def rewrite_roles(text: str, resolve: Callable[[str], str | None]) -> str:
    """Return ``text`` with each Sphinx role replaced by an optional autorefs reference or code.

    ``resolve(target)`` gives the identifier to link to, or None for plain code.
    """

    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        title = target.rpartition(".")[2] if match["tilde"] else target
        identifier = None if match["role"] == "math" else resolve(target)
        if identifier is None:
            return f"`{title}`"
        return f'<autoref identifier="{identifier}" optional><code>{html.escape(title)}</code></autoref>'

    return ROLE.sub(replace, text)


def _resolver(obj: griffe.Object, loader: griffe.GriffeLoader) -> Callable[[str], str | None]:
    def resolve(target: str) -> str | None:
        head, _, rest = target.partition(".")
        try:
            path = obj.resolve(head)
        except griffe.NameResolutionError:
            path = head
        if rest:
            path = f"{path}.{rest}"
        if path != PACKAGE and not path.startswith(f"{PACKAGE}."):
            return None
        try:
            loader.modules_collection.get_member(path)
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            where = f"{obj.relative_filepath}:{obj.docstring.lineno if obj.docstring else obj.lineno}"
            griffe.logger.warning(f"{where}: {target!r} names nothing in {PACKAGE}")
            return None
        return None if path.rpartition(".")[2].startswith("_") else path

    return resolve


def _comment_docstring(obj: griffe.Object, loader: griffe.GriffeLoader) -> griffe.Docstring | None:
    """The ``#:`` lines right above the attribute ``obj``, as its docstring."""
    lines, assignment = obj.module.lines, obj.lineno  # assignment: the 1-based line of ``name = ...``
    if not lines or not assignment:
        return None
    first = assignment - 1
    while first > 0 and lines[first - 1].strip().startswith(COMMENT):
        first -= 1
    comment = [line.strip()[len(COMMENT) :].strip() for line in lines[first : assignment - 1]]
    if not comment:
        return None
    return griffe.Docstring(
        "\n".join(comment),
        lineno=first + 1,
        endlineno=assignment - 1,
        parent=obj,
        parser=loader.docstring_parser,
        parser_options=loader.docstring_options,
    )


def _translate(obj: griffe.Object, loader: griffe.GriffeLoader) -> None:
    if obj.docstring is None and obj.is_attribute:
        obj.docstring = _comment_docstring(obj, loader)
    if obj.docstring is not None:
        text = LITERAL.sub(":", obj.docstring.value)
        obj.docstring.value = rewrite_roles(text, _resolver(obj, loader))
    for member in obj.members.values():
        if not member.is_alias:
            _translate(member, loader)  # type: ignore[arg-type]


class SphinxConventions(griffe.Extension):
    """Translate every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name == PACKAGE:
            _translate(pkg, loader)
