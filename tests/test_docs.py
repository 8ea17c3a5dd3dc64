"""README stays true: the recipe reference is the one generated from the config classes."""

from __future__ import annotations

import re
from pathlib import Path

from rlvr.config import reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- recipe-reference:start[^>]*-->\n(.*?)<!-- recipe-reference:end -->", re.S)


def test_readme_recipe_reference_matches_config() -> None:
    match = BLOCK.search(README.read_text())
    assert match, "README.md lost its recipe-reference markers"
    assert match.group(1).strip() == reference_markdown().strip(), "run `make docs` to regenerate it"


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make test" in text and "make demo" in text
