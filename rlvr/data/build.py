"""`rlvr data build RECIPE`: the verified, difficulty-balanced RL prompt set.

    sources -> multiple choice to open-ended -> verifiability filter -> dedupe -> decontaminate
            -> difficulty (pass@k with the current model) -> balance -> parquet/jsonl + data card

Stages 1-3 run per row with HF `datasets.map` (`num_proc` workers, memory-mapped Arrow, so a million input
rows stay within memory bounds); dedupe and decontamination need all rows and run in one process. Every row
that leaves the pipeline gets a reason, counted per stage, reason and source in the data card.
"""

from __future__ import annotations

import json
import random
import resource
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rlvr.config import RecipeError, Section
from rlvr.data import dedup, difficulty
from rlvr.data.filters import filter_verifiable, to_open_ended
from rlvr.data.schema import write_prompt_file
from rlvr.data.sources import DEFAULT_VERIFIER, adapt_record, adapter_for, data_format, prompt_row
from rlvr.data.synthesis import DEFAULT_TEMPLATE, SampleFn, synthesize


class SourceConfig(Section):
    name: str = Field(description="source name; prefixes row ids and labels the data card")
    path: str | list[str] = Field(description="local jsonl/json/parquet/csv file(s), or a hub dataset name")
    adapter: Literal["gsm8k", "math", "aqua", "mmlu", "generic"] = Field(description="how to read a record")
    split: str = Field("train", description="split of a hub dataset")
    verifier: str | None = Field(
        None, description="verifier spec its rows name; default by adapter: gsm8k numeric, others math"
    )
    limit: int | None = Field(None, ge=1, description="read at most this many rows")
    question_field: str | None = Field(None, description="generic adapter: the question")
    answer_field: str | None = Field(None, description="generic adapter: the gold (or the correct letter)")
    choices_field: str | None = Field(
        None, description="generic adapter: the options of a multiple-choice item"
    )
    letter_field: str | None = Field(
        None, description="generic adapter: the correct letter, if not answer_field"
    )
    meta_fields: list[str] = Field([], description="generic adapter: source fields each row keeps in meta")


class EvalSetConfig(Section):
    path: str = Field(description="evaluation prompts to decontaminate against (jsonl/json/parquet/csv)")
    field: str = Field("question", description="the field holding the prompt text")


class DifficultyConfig(Section):
    enabled: bool = Field(True, description="estimate pass@k and balance; false keeps every verified row")
    model: str | None = Field(None, description="checkpoint folder of the current model")
    preset: Literal["tiny", "small"] | None = Field(None, description="random-weight preset (tests, CPU)")
    engine: Literal["vllm", "torch"] = Field("vllm", description="rollout engine")
    k: int = Field(8, ge=1, description="attempts per prompt at temperature 1.0")
    max_new_tokens: int = Field(512, ge=1, description="response cap")
    chunk_size: int = Field(256, ge=1, description="rows per checkpointed chunk")
    pass_table: str | None = Field(
        None, description="jsonl of {id, solved}: use instead of running the model"
    )
    max_solve_rate: float = Field(0.99, ge=0, le=1, description="exclude items solved more often (simple)")
    unsolved_fraction: float = Field(0.5, ge=0, le=1, description="target fraction solved in none of k")
    target_size: int = Field(60000, ge=1, description="rows in the final set")


class SynthesisConfig(Section):
    enabled: bool = Field(False, description="have the model write new problems from seed items")
    seeds: int = Field(1000, ge=1, description="seed items, drawn from the verified rows")
    per_seed: int = Field(1, ge=1, description="new problems written per seed")
    k: int = Field(4, ge=1, description="independent solutions per new problem; a strict majority must agree")
    template: str = Field(DEFAULT_TEMPLATE, description="prompt that asks for a new problem; has {problem}")


class DataBuildConfig(Section):
    output_dir: str = Field("data/rlvr_prompts", description="output folder")
    seed: int = Field(0, description="sampling seed")
    num_proc: int = Field(2, ge=1, description="datasets.map workers")
    jsonl: bool = Field(False, description="also write prompts.jsonl")
    limit_per_source: int | None = Field(None, ge=1, description="read at most this many rows of each source")
    sources: list[SourceConfig] = Field(description="input datasets")
    decontaminate: list[EvalSetConfig] = Field(default_factory=list, description="evaluation sets")
    near_duplicate_threshold: float = Field(
        0.8, gt=0, le=1, description="MinHash Jaccard for near duplicates"
    )
    synthesis: SynthesisConfig = SynthesisConfig()
    difficulty: DifficultyConfig = DifficultyConfig()


def read_source(source: SourceConfig, num_proc: int, limit: int | None = None) -> Any:
    """Stage 1: a `datasets.Dataset` of candidates (the columns listed in `rlvr/data/sources.py`)."""
    import datasets

    paths = [source.path] if isinstance(source.path, str) else list(source.path)
    local = all(Path(p).exists() for p in paths)
    if local:
        raw = datasets.load_dataset(data_format(paths), data_files=paths, split="train")
    elif len(paths) == 1 and not any(Path(p).suffix for p in paths):
        raw = datasets.load_dataset(paths[0], split=source.split)  # the hub: needs network access
    else:
        missing = [p for p in paths if not Path(p).exists()]
        raise FileNotFoundError(f"source {source.name!r}: no such file(s) {missing}")
    limit = min(x for x in (source.limit, limit, len(raw)) if x is not None)
    if limit < len(raw):
        raw = raw.select(range(limit))
    adapter = adapter_for(source.adapter, source.model_dump())
    verifier = source.verifier or DEFAULT_VERIFIER[source.adapter]

    def adapt(record: dict[str, Any], index: int) -> dict[str, Any]:
        return adapt_record(record, index, source.name, adapter, verifier)

    return raw.map(
        adapt,
        with_indices=True,
        remove_columns=raw.column_names,
        num_proc=_procs(raw, num_proc),
        desc=f"read {source.name}",
    )


def _procs(ds: Any, num_proc: int) -> int | None:
    return num_proc if num_proc > 1 and len(ds) >= 1000 else None


def _count_pairs(pairs: Any, stage: str, card: dict[str, Any]) -> None:
    """Adds (source, reason) drop counts of one stage to the card (empty reasons are not drops)."""
    for (source, reason), n in sorted(Counter(p for p in pairs if p[1]).items()):
        card["dropped"].append({"stage": stage, "source": source, "reason": reason, "rows": n})


def _first_occurrences(prompts: list[str]) -> list[int]:
    """Indices of the first row of every normalised prompt text (exact dedupe)."""
    seen: set[str] = set()
    first = []
    for i, prompt in enumerate(prompts):
        key = dedup.text_hash(prompt)
        if key not in seen:
            seen.add(key)
            first.append(i)
    return first


def build(
    config: DataBuildConfig, solve: difficulty.SolveFn | None = None, sample: SampleFn | None = None
) -> dict[str, Any]:
    """Runs the pipeline; returns the data card (also written to the output folder). `solve` and `sample`
    replace the model for difficulty and synthesis; by default both use the model of `config.difficulty`.

    `datasets`' result cache is off for the run: a cached `map` would survive a change to the filters (and
    make timings meaningless); intermediate Arrow files go to a temporary folder instead."""
    import datasets

    caching = datasets.is_caching_enabled()
    datasets.disable_caching()
    try:
        return _build(config, solve, sample)
    finally:
        if caching:
            datasets.enable_caching()


def _build(
    config: DataBuildConfig, solve: difficulty.SolveFn | None, sample: SampleFn | None
) -> dict[str, Any]:
    import datasets

    d = config.difficulty
    needs_model = (d.enabled and solve is None and not d.pass_table) or (
        config.synthesis.enabled and sample is None
    )
    if needs_model and not (d.model or d.preset):
        raise RecipeError(
            "difficulty.model (a checkpoint folder) or difficulty.preset is needed to measure pass@k or to "
            "synthesise; or set difficulty.pass_table, or difficulty.enabled=false"
        )
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    card: dict[str, Any] = {"stages": [], "dropped": [], "seconds": {}}

    def stage(name: str, rows: int, t0: float) -> None:
        card["stages"].append({"stage": name, "rows_out": rows})
        card["seconds"][name] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    parts = [read_source(s, config.num_proc, config.limit_per_source) for s in config.sources]
    ds = datasets.concatenate_datasets(parts)
    card["input_rows"] = {s.name: len(p) for s, p in zip(config.sources, parts, strict=True)}
    _count_pairs(zip(ds["source"], ds["drop"], strict=True), "read", card)
    stage("read", sum(1 for reason in ds["drop"] if not reason), t0)

    t0 = time.perf_counter()
    ds = ds.map(to_open_ended, num_proc=_procs(ds, config.num_proc), desc="multiple choice to open-ended")
    card["multiple_choice_converted"] = sum(
        1 for choices, reason in zip(ds["choices"], ds["drop"], strict=True) if choices and not reason
    )
    ds = ds.map(filter_verifiable, num_proc=_procs(ds, config.num_proc), desc="verifiability filter")
    # counted from two columns: the rows themselves stay in Arrow (a million of them as dicts: gigabytes)
    pairs = [
        (src, reason)
        for src, reason in zip(ds["source"], ds["drop"], strict=True)
        if reason and not reason.startswith("malformed")
    ]
    _count_pairs((p for p in pairs if p[1].startswith("mc_")), "open_ended", card)
    _count_pairs((p for p in pairs if not p[1].startswith("mc_")), "verifiable", card)
    survivors = [i for i, reason in enumerate(ds["drop"]) if not reason]
    stage("verifiable", len(survivors), t0)

    t0 = time.perf_counter()
    survivors_ds = ds.select(survivors)
    # exact duplicates, on two columns before any row is materialised (`ds[col]` is lazy: index a list)
    first = _first_occurrences(list(survivors_ds["prompt"]))
    duplicates = set(range(len(survivors))) - set(first)
    sources = list(survivors_ds["source"])
    _count_pairs(((sources[i], "exact_duplicate") for i in sorted(duplicates)), "dedupe", card)
    rows = survivors_ds.select(first).to_list()
    dedupe_s = time.perf_counter() - t0

    models: dict[str, Any] = {}  # the Ray model, started once for synthesis and difficulty

    def model() -> Any:
        if "ray" not in models:
            from rlvr.data.pass_at_k import RayModel

            models["ray"] = RayModel(config.difficulty, config.seed)
        return models["ray"]

    if config.synthesis.enabled:
        t0 = time.perf_counter()
        syn = config.synthesis
        seeds = random.Random(config.seed).sample(rows, min(syn.seeds, len(rows)))
        new_rows, rejected = synthesize(seeds, sample or model().sample, syn.k, syn.per_seed, syn.template)
        for reason, n in sorted(rejected.items()):
            card["dropped"].append({"stage": "synthesis", "source": "synthetic", "reason": reason, "rows": n})
        rows += new_rows
        card["synthesized"] = len(new_rows)
        stage("synthesis", len(rows), t0)

    t0 = time.perf_counter()
    if card.get("synthesized"):  # the new rows have not met the exact check yet
        first = set(_first_occurrences([r["prompt"] for r in rows]))
        _count_pairs(
            ((r["source"], "exact_duplicate") for i, r in enumerate(rows) if i not in first), "dedupe", card
        )
        rows = [r for i, r in enumerate(rows) if i in first]
    near = dedup.near_duplicates([r["prompt"] for r in rows], config.near_duplicate_threshold)
    _count_pairs(((rows[i]["source"], "near_duplicate") for i in near), "dedupe", card)
    rows = [r for i, r in enumerate(rows) if i not in near]
    t0 -= dedupe_s
    stage("dedupe", len(rows), t0)

    t0 = time.perf_counter()
    eval_texts = []
    for eval_set in config.decontaminate:
        ds_eval = datasets.load_dataset(
            data_format([eval_set.path]), data_files=[eval_set.path], split="train"
        )
        eval_texts += [str(x) for x in ds_eval[eval_set.field]]
    contamination = dedup.Contamination(eval_texts)
    for row in rows:
        if contamination.hit(row["prompt"]):
            row["drop"] = "contaminated"
    _count_pairs(((r["source"], r["drop"]) for r in rows), "decontaminate", card)
    rows = [r for r in rows if not r["drop"]]
    stage("decontaminate", len(rows), t0)

    if d.enabled:
        t0 = time.perf_counter()
        solve = solve or solver(d, model)
        solved, chunks = difficulty.estimate(rows, solve, d.k, out, d.chunk_size)
        card["difficulty_chunks"] = chunks
        for row in rows:
            row["solved"] = solved[row["id"]]
        card["solve_histogram"] = dict(sorted(Counter(r["solved"] for r in rows).items()))
        stage("difficulty", len(rows), t0)
        t0 = time.perf_counter()
        rows, card["balance"] = difficulty.balance(
            rows, d.k, d.target_size, d.unsolved_fraction, d.max_solve_rate, config.seed
        )
        stage("balance", len(rows), t0)
    card["output_rows"] = len(rows)
    card["output_by_source"] = dict(sorted(Counter(r["source"] for r in rows).items()))
    card["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    card["seconds"]["total"] = round(time.perf_counter() - start, 2)
    write_outputs(rows, out, config, card)
    return card


def write_outputs(
    rows: list[dict[str, Any]], out: Path, config: DataBuildConfig, card: dict[str, Any]
) -> None:
    k = config.difficulty.k if config.difficulty.enabled else None
    table = [prompt_row(r, k) for r in rows]
    write_prompt_file(table, out / "prompts.parquet")
    if config.jsonl:
        write_prompt_file(table, out / "prompts.jsonl")
    (out / "data_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "data_card.md").write_text(card_markdown(card))
    if "solve_histogram" in card:
        _histogram(card["solve_histogram"], k or 1, out / "solve_rate.png")


def card_markdown(card: dict[str, Any]) -> str:
    lines = ["# Data card", "", f"Output: **{card['output_rows']}** prompts.", "", "## Rows per stage", ""]
    lines += ["| stage | rows out | seconds |", "|---|---|---|"]
    lines += [
        f"| {s['stage']} | {s['rows_out']} | {card['seconds'].get(s['stage'], '')} |" for s in card["stages"]
    ]
    lines += ["", "## Input rows per source", "", "| source | rows |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in card["input_rows"].items()]
    lines += ["", "## Dropped rows", "", "| stage | source | reason | rows |", "|---|---|---|---|"]
    lines += [f"| {d['stage']} | {d['source']} | {d['reason']} | {d['rows']} |" for d in card["dropped"]]
    if "solve_histogram" in card:
        lines += ["", "## Solved of k (before balancing)", "", "| solved | prompts |", "|---|---|"]
        lines += [f"| {s} | {n} |" for s, n in card["solve_histogram"].items()]
        lines += ["", "## Balance", "", "```", json.dumps(card["balance"], indent=2), "```"]
    lines += ["", "## Output per source", "", "| source | rows |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in card["output_by_source"].items()]
    lines += ["", f"Peak RSS {card['peak_rss_mb']} MB; {card['seconds']['total']} s in all.", ""]
    return "\n".join(lines)


def _histogram(histogram: dict[Any, int], k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    keys = sorted(int(x) for x in histogram)
    ax.bar(keys, [histogram[x] if x in histogram else histogram[str(x)] for x in keys])
    ax.set_xlabel(f"solved of {k}")
    ax.set_ylabel("prompts")
    ax.set_title("difficulty before balancing")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def solver(d: DifficultyConfig, model: Callable[[], difficulty.SolveFn]) -> difficulty.SolveFn:
    """How stage 6 measures pass@k: a table given in the recipe, or the model through Ray actors."""
    if d.pass_table:
        table = {}
        for line in Path(d.pass_table).read_text().splitlines():
            item = json.loads(line)
            table[item["id"]] = int(item["solved"])

        def lookup(rows: list[dict[str, Any]]) -> list[int]:
            missing = [r["id"] for r in rows if r["id"] not in table]
            if missing:
                raise ValueError(
                    f"difficulty.pass_table has no entry for {missing[:5]} ({len(missing)} rows)"
                )
            return [table[r["id"]] for r in rows]

        return lookup
    ray_model = model()
    return lambda rows: ray_model.solve([prompt_row(r) for r in rows])
