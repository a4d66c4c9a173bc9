"""The documentation site's Markdown, as the snippet tests and the docstrings write it.

Two things MkDocs would otherwise render wrongly, in the pages and in the docstrings that
mkdocstrings renders alike:

- a code fence's test settings (a Python fence followed by test="django" file="mysite/views.py",
  read by tests/docs) are not Markdown: the fence keeps its language and drops them;
- the docstrings' cross-references in reStructuredText roles (:class:, :func:, :mod: with a
  ~ for the last name only) are shown as the code they name.
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

FENCE_SETTINGS = re.compile(r"^(\s*`{3,}\s*python)\s+[^`\n]*$")
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    shortened, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if shortened else target}`"


class _Rewrite(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        return [ROLE.sub(_role, FENCE_SETTINGS.sub(r"\1", line)) for line in lines]


class GoaltrackMarkdown(Extension):
    """Registered ahead of the fenced code extensions, so they see plain fences."""

    def extendMarkdown(self, md: Markdown) -> None:
        md.preprocessors.register(_Rewrite(md), "goaltrack_markdown", 40)


def on_config(config: Any) -> Any:
    """MkDocs hook: add the extension to the site's (mkdocstrings reads the same list)."""
    config.markdown_extensions.append(GoaltrackMarkdown())
    return config
