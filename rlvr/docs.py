"""`make docs`: docs/recipes.md, the reference of every recipe key, generated from the config classes."""

from __future__ import annotations

import sys
from pathlib import Path

from rlvr.config import RecipeConfig
from rlvr.config_text import reference_markdown
from rlvr.data.build import DataBuildConfig
from rlvr.data.sft_set import SFTDataConfig

RECIPES_DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def recipes_markdown() -> str:
    """The whole of docs/recipes.md."""
    return f"""# Recipe reference

Generated from `rlvr/config.py`, `rlvr/data/build.py` and `rlvr/data/sft_set.py` by `make docs`;
`tests/test_docs.py` fails when it is stale. Every key of a training recipe is read by the code that runs it
(a test runs a recipe with every feature on and checks), and a key that is not in the schema is refused with
the closest name.

## Training recipe

`rlvr train RECIPE`, `rlvr submit`, `rlvr sft`, `rlvr eval` (see [training](training.md)).

{reference_markdown(RecipeConfig)}

## Data recipe

`rlvr data build RECIPE` (see [data](data.md)).

{reference_markdown(DataBuildConfig)}

## SFT data recipe

`rlvr data sft RECIPE` (see [data](data.md)).

{reference_markdown(SFTDataConfig)}
"""


def main() -> int:
    RECIPES_DOC.write_text(recipes_markdown())
    print(f"wrote {RECIPES_DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
