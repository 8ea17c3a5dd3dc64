"""Recipe text for people: one line per validation error (the key path, the value, what is allowed) and the
recipe reference tables of docs/recipes.md, both generated from the config classes."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal

import yaml
from pydantic import BaseModel


def compact(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")


# ---------------------------------------------------------------- error messages

# keys earlier versions took, and what a recipe says instead
REPLACED_KEYS = {
    "algorithm.micro_batch_size": "micro-batches are packed to a token budget now, "
    "algorithm.micro_batch_tokens (e.g. 4096; sequences end to end, no padding)",
}


def describe_error(root: type[BaseModel], err: Any) -> str:
    """One line per pydantic error: the dotted key path, the value, and what is allowed."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "<root>"
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden" and key in REPLACED_KEYS:
        return f"{key} is no longer a key: {REPLACED_KEYS[key]}"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.5)
        hint = f"; did you mean {'.'.join([*loc[:-1], close[0]])!r}?" if close else ""
        return f"unknown key {key!r}{hint} (allowed here: {', '.join(allowed)})"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind == "literal_error":
        allowed = list(typing.get_args(_annotation(root, loc)))
        allowed = [a for a in allowed if a is not None] or allowed
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{key}: {value!r} is not one of {', '.join(repr(a) for a in allowed)}{hint}"
    if kind == "value_error":  # a check across sections names its fields itself
        message = err["msg"].removeprefix("Value error, ")
        return message if not loc else f"{key}: {message}"
    if kind in _RANGE_ERRORS:  # the type is right, the value is out of range: "must be greater than ..."
        return f"{key}: got {value!r}; {err['msg'].replace('Input should', 'must')}"
    expected = _type_name(_annotation(root, loc))
    return f"{key}: got {value!r} ({type(value).__name__}); expected {expected} — {err['msg']}"


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"}
_RANGE_ERRORS |= {"too_short", "too_long", "finite_number"}


def _walk(root: type[BaseModel], loc: list[str]) -> tuple[type[BaseModel] | None, Any]:
    """Follow `loc` through nested sections; returns (section model, annotation of the last key)."""
    model: type[BaseModel] | None = root
    annotation: Any = root
    for part in loc:
        items = typing.get_args(_strip_optional(annotation))
        if part.isdigit() and typing.get_origin(_strip_optional(annotation)) is list and items:
            annotation = items[0]  # an item of a list of sections: `sources.0.adapter`
        elif model is None or part not in model.model_fields:
            return None, annotation
        else:
            annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model, annotation


def _allowed_keys(root: type[BaseModel], section_loc: list[str]) -> list[str]:
    model, _ = _walk(root, section_loc)
    return list(model.model_fields) if model else []


def _annotation(root: type[BaseModel], loc: list[str]) -> Any:
    # Errors inside a union point one level deeper (['model', 'preset', 'literal[...]']); _walk stops at
    # the last real field, which is the one whose annotation we want.
    _, annotation = _walk(root, loc)
    return None if annotation is root else _strip_optional(annotation)


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return "a valid value"
    if typing.get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


# ---------------------------------------------------------------- documentation


def reference_markdown(schema: type[BaseModel]) -> str:
    """A recipe reference table generated from the config classes (`make docs` writes docs/recipes.md; a test
    keeps it in sync), for the training recipe's schema or another's (the dataset builder's)."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]

    def rows(model: type[BaseModel], prefix: str) -> None:
        for key, field_info in model.model_fields.items():
            annotation = _strip_optional(field_info.annotation)
            item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                rows(annotation, f"{prefix}{key}.")
                continue
            if isinstance(item, type) and issubclass(item, BaseModel):
                rows(item, f"{prefix}{key}[].")
                continue
            default = "required" if field_info.is_required() else f"`{compact(field_info.default)}`"
            if len(default) > 40:  # long texts (prompt templates): see the source
                default = "(see `" + model.__module__ + "`)"
            kind = _type_name(annotation).replace("|", "\\|")
            if field_info.annotation != annotation:
                kind += " or null"
            lines.append(f"| `{prefix}{key}` | {kind} | {default} | {field_info.description or ''} |")

    rows(schema, "")
    return "\n".join(lines)
