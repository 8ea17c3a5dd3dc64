"""Prompt sets: the builder's row schema and the one reader of prompt files."""

from rlvr.data.reader import load_prompts, read_prompt_file, require_rows
from rlvr.data.schema import PROMPT_FIELDS, PromptFile, PromptRow, fingerprint, write_prompt_file

__all__ = [
    "PROMPT_FIELDS",
    "PromptFile",
    "PromptRow",
    "fingerprint",
    "load_prompts",
    "read_prompt_file",
    "require_rows",
    "write_prompt_file",
]
