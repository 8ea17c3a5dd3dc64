"""Prompt sets: the builder's row schema and readers."""

from rlvr.data.schema import PROMPT_FIELDS, PromptFile, PromptRow, read_prompt_file

__all__ = ["PROMPT_FIELDS", "PromptFile", "PromptRow", "read_prompt_file"]
