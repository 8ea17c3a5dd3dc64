"""Find a verifier by registered name, by "pkg.module:obj" import path, or by `rlvr.verifiers` entry point.

A pip-installed package adds verifiers with no change to rlvr by declaring, in its pyproject.toml::

    [project.entry-points."rlvr.verifiers"]
    chemistry = "my_pkg.verifiers:ChemistryVerifier"
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import verifiers.builtin  # noqa: F401  (registers exact, numeric, math)
import verifiers.choice  # noqa: F401  (registers choice)
from verifiers.base import _REGISTRY, Result, register_verifier

__all__ = ["get_verifier", "register_verifier", "registered_names", "entry_point_names"]

ENTRY_POINT_GROUP = "rlvr.verifiers"


@runtime_checkable
class VerifierLike(Protocol):
    def verify(self, response: str, reference: str, sample: Any = None) -> Result: ...


def registered_names() -> list[str]:
    """Names registered with `@register_verifier`, the built-ins included."""
    return sorted(_REGISTRY)


def entry_point_names() -> list[str]:
    """Names declared in the `rlvr.verifiers` entry-point group by installed distributions."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def _instantiate(obj: Any, spec: str, kwargs: dict[str, Any]) -> VerifierLike:
    if isinstance(obj, VerifierLike) and not isinstance(obj, type):
        if kwargs:
            raise TypeError(f"verifier {spec!r} is an instance; options {sorted(kwargs)} cannot be applied")
        return obj
    if not callable(obj):
        raise TypeError(f"verifier {spec!r} resolved to {obj!r}, which is neither a verifier nor a factory")
    verifier = obj(**kwargs)
    if not isinstance(verifier, VerifierLike):
        raise TypeError(
            f"verifier {spec!r} built {verifier!r}, which has no verify(response, reference, sample)"
        )
    return verifier


def _import_path(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"verifier {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"verifier {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def get_verifier(spec: str, **kwargs: Any) -> VerifierLike:
    """Build a verifier from a registered name, an import path "pkg.module:obj", or an entry-point name.

    Keyword arguments go to the class or factory (e.g. `reward_wrong=0.0`).
    """
    if spec in _REGISTRY:
        return _instantiate(_REGISTRY[spec], spec, kwargs)
    if ":" in spec:
        return _instantiate(_import_path(spec), spec, kwargs)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            return _instantiate(ep.load(), spec, kwargs)
    known = registered_names() + entry_point_names()
    close = difflib.get_close_matches(spec, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown verifier {spec!r}.{hint} Known: {', '.join(known)}; "
        "or give an import path 'pkg.module:obj'."
    )
