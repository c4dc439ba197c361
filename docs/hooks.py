"""Build helpers for the documentation site (not part of the package, not copied to the site).

* :class:`CommentDocs`, a Griffe extension (``mkdocs.yml``: mkdocstrings' ``extensions``):
  asm_dask documents the settings of a job file with ``#:`` comments above each field
  (:mod:`asm_dask.config`), as Sphinx does; Griffe reads only docstrings. This turns those
  comments into docstrings, adds what the setting expects (its ``Expect(...)``, the words
  an error message uses), and shows each field's type without pydantic's ``Annotated``
  machinery.
* :func:`on_config`, an MkDocs hook: ``cluster/README.md`` and ``benchmarks/README.md`` are
  pages of the site too (included whole by pymdownx.snippets); their links to
  ``../docs/PAGE.md`` work on GitHub, and are made links to ``PAGE.md`` in the site.
* :func:`on_page_content`, an MkDocs hook (``mkdocs.yml``: ``hooks``): docstrings use
  Sphinx roles (``:func:`open_client```); MkDocs shows them as ``:func:`` before the name.
  The role is dropped and the name kept as code (``~a.b.c`` as ``c``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import griffe
from markdown import Extension as MarkdownExtension
from markdown.preprocessors import Preprocessor

_REPO_LINK = re.compile(r"\]\(\.\./docs/([^)]*)\)")


class _RepoLinks(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        return [_REPO_LINK.sub(r"](\1)", line) for line in lines]


class _RepoLinksExtension(MarkdownExtension):
    def extendMarkdown(self, md: Any) -> None:
        # after pymdownx.snippets (priority 32), which brings the READMEs in
        md.preprocessors.register(_RepoLinks(md), "asm_dask_repo_links", 31)


def on_config(config: Any, **kwargs: Any) -> Any:
    config.markdown_extensions.append(_RepoLinksExtension())
    return config


_ROLE = re.compile(r":(?:py:)?(?:func|class|data|mod|meth|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)


class CommentDocs(griffe.Extension):
    """``#:`` comments above an attribute become its docstring; ``Annotated[T, ...]`` shows as ``T``."""

    def __init__(self) -> None:
        self._lines: dict[Path, list[str]] = {}

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any) -> None:
        expects = _expects(attr.annotation)
        if expects is None and isinstance(attr.annotation, griffe.ExprName):  # an alias: InputPath
            alias = attr.module.members.get(attr.annotation.name)
            if alias is not None and not alias.is_alias:
                expects = _expects(getattr(alias, "value", None))
        if attr.annotation is not None:
            attr.annotation = _plain(attr.annotation)
        if attr.docstring is not None or attr.lineno is None or not isinstance(attr.filepath, Path):
            return
        lines = self._lines.setdefault(attr.filepath, attr.filepath.read_text().splitlines())
        comment: list[str] = []
        row = attr.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        text = " ".join(comment)
        if expects:
            text += ("\n\n" if text else "") + f"Expects {expects}."
        if text:
            attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)


def _expects(expr: Any) -> str | None:
    """The text of an ``Expect("...")`` among the metadata of ``Annotated[...]``, if any."""
    if not _is_annotated(expr):
        return None
    for item in expr.slice.elements[1:]:
        if isinstance(item, griffe.ExprCall) and str(item.function) == "Expect" and item.arguments:
            try:
                return ast.literal_eval(str(item.arguments[0]))
            except (ValueError, SyntaxError):
                return None
    return None


def _is_annotated(expr: Any) -> bool:
    return isinstance(expr, griffe.ExprSubscript) and str(expr.left) == "Annotated" \
        and isinstance(expr.slice, griffe.ExprTuple)


def _plain(expr: Any) -> Any:
    """``Annotated[T, ...]`` as ``T``, also inside unions and other subscripts."""
    if _is_annotated(expr):
        return _plain(expr.slice.elements[0])
    if isinstance(expr, griffe.ExprBinOp):
        return griffe.ExprBinOp(_plain(expr.left), expr.operator, _plain(expr.right))
    if isinstance(expr, griffe.ExprSubscript):
        return griffe.ExprSubscript(expr.left, _plain(expr.slice))
    if isinstance(expr, griffe.ExprTuple):
        return griffe.ExprTuple([_plain(e) for e in expr.elements], implicit=expr.implicit)
    return expr
