"""The docs stay true: the recipe reference is the one generated from the config classes, and README shows the
two commands and links every page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

from rlvr.docs import RECIPES_DOC, recipes_markdown

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_recipe_reference_matches_the_config_classes() -> None:
    assert RECIPES_DOC.read_text() == recipes_markdown(), "run `make docs` to refresh docs/recipes.md"


def test_readme_shows_the_two_commands_and_links_every_doc() -> None:
    text = README.read_text()
    assert "make test" in text and "make demo" in text
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in text, f"README does not link docs/{page.name}"
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / target).exists(), target


def test_the_step_shown_in_readme_is_the_code() -> None:
    text = README.read_text()
    snippet = re.search(r"```python\n(def step.*?)```", text, re.S).group(1)
    source = (REPO / "rlvr/trainer.py").read_text()
    shown = [line for line in snippet.splitlines() if line.strip() and not line.strip().startswith("...")]
    assert len(shown) > 20
    for line in shown:  # the README shows the methods one indent to the left
        assert "    " + line in source, (
            f"README's Trainer.step differs from rlvr/trainer.py at: {line.strip()}"
        )
