"""README stays true: the recipe reference is the one generated from the config classes."""

from __future__ import annotations

import re
from pathlib import Path

from rlvr.config import readme_with_references, reference_markdown
from rlvr.data.build import DataBuildConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_recipe_references_match_the_config_classes() -> None:
    text = README.read_text()
    for marker, schema in (("recipe-reference", None), ("data-recipe-reference", DataBuildConfig)):
        match = re.search(rf"<!-- {marker}:start[^>]*-->\n(.*?)<!-- {marker}:end -->", text, re.S)
        assert match, f"README.md lost its {marker} markers"
        assert match.group(1).strip() == reference_markdown(schema).strip(), "run `make docs` to refresh it"
    assert readme_with_references(text) == text


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make test" in text and "make demo" in text
