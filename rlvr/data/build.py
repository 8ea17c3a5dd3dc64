"""`rlvr data build RECIPE`: the verified, difficulty-balanced RL prompt set.

    read -> open_ended -> verifiable -> exact_dedupe -> [synthesis] -> near_dedupe -> decontaminate
         -> [difficulty (pass@k with the current model) -> balance] -> parquet/jsonl + data card

Each stage is a function (`stages()` lists them), candidates in, candidates out, timed and counted into the
data card. The first three run per row with HF `datasets.map` (`num_proc` workers, memory-mapped Arrow, so a
million input rows stay within memory bounds); from exact dedupe on, the survivors are a list. Every row that
leaves the pipeline gets a reason, counted by the stage that drops it, per source, in the data card.
"""

from __future__ import annotations

import json
import random
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rlvr.config import PromptConfig, RecipeError, Section
from rlvr.data import dedup, difficulty
from rlvr.data.card import describe_output, write_outputs
from rlvr.data.filters import filter_verifiable, to_open_ended
from rlvr.data.schema import file_records, write_prompt_file
from rlvr.data.sources import DEFAULT_VERIFIER, adapt_record, adapter_for, candidate, data_format, prompt_row
from rlvr.data.synthesis import DEFAULT_TEMPLATE, SampleFn, synthesize

AdapterName = Literal["gsm8k", "math", "aqua", "mmlu", "tal", "mathqa_mc", "arc_mc", "generic"]
_MAPPING = ("question_field", "answer_field", "answer_type", "choices_field", "letter_field", "choice_index")


class SourceConfig(Section):
    name: str = Field(description="source name; prefixes row ids and labels the data card")
    path: str | list[str] = Field(description="local jsonl/json/parquet/csv file(s), or a hub dataset name")
    adapter: AdapterName = Field(description="how to read a record (generic: the field mapping below)")
    license: str = Field(
        description="the source's license as its publisher states it ('unstated' if none): kept in every "
        "row's meta and summed per license in the data card"
    )
    split: str = Field("train", description="split of a hub dataset")
    verifier: str | None = Field(
        None,
        description="verifier its rows name; default by adapter: gsm8k numeric, arc_mc exact, others math",
    )
    limit: int | None = Field(None, ge=1, description="read at most this many rows")
    question_field: str | list[str] | None = Field(
        None, description="generic adapter: the question, or several fields joined by a newline"
    )
    answer_field: str | None = Field(None, description="generic adapter: the gold (or the correct letter)")
    answer_type: Literal["text", "number"] | None = Field(
        None,
        description="generic adapter: text (as is) or number (word-problem number forms, a list of several "
        "unknowns as a set; anything else dropped as answer_not_a_number)",
    )
    choices_field: str | None = Field(
        None, description="generic adapter: the options of a multiple-choice item"
    )
    letter_field: str | None = Field(
        None, description="generic adapter: the correct letter, if not answer_field"
    )
    choice_index: Literal[0, 1] | None = Field(
        None, description="generic adapter: the correct option is an index counted from 0 or 1, not a letter"
    )
    meta_fields: list[str] = Field([], description="generic adapter: source fields each row keeps in meta")

    @model_validator(mode="after")
    def _mapping_needs_generic(self) -> SourceConfig:
        """A field mapping on a code adapter would be ignored: refused."""
        given = [k for k in _MAPPING if getattr(self, k) is not None]
        unused = given + ["meta_fields"] * bool(self.meta_fields) if self.adapter != "generic" else []
        if unused:
            raise ValueError(f"only adapter: generic reads {', '.join(unused)} (this one is {self.adapter})")
        if self.answer_type and self.choices_field:
            raise ValueError("answer_type applies to open-ended sources, not with choices_field")
        return self


class EvalSetConfig(Section):
    path: str = Field(description="evaluation prompts to decontaminate against (jsonl/json/parquet, .gz)")
    field: str | list[str] = Field(
        "question",
        description="the field holding the prompt text; a list: the first of them a record has (collections "
        "whose files name it differently)",
    )
    name: str | None = Field(None, description="label in the data card (default: the file name)")
    optional: bool = Field(
        False, description="a missing file is skipped and noted in the card (a user-supplied set, MATH-500)"
    )


class DifficultyConfig(Section):
    enabled: bool = Field(True, description="estimate pass@k and balance; false keeps every verified row")
    model: str | None = Field(None, description="checkpoint folder of the current model")
    preset: Literal["tiny", "small"] | None = Field(None, description="random-weight preset (tests, CPU)")
    engine: Literal["vllm", "torch"] = Field("vllm", description="rollout engine")
    prompt: PromptConfig = Field(
        PromptConfig(), description="how a row becomes the model's text: the training recipe's data.prompt"
    )
    k: int = Field(8, ge=1, description="attempts per prompt at temperature 1.0")
    max_new_tokens: int = Field(512, ge=1, description="response cap")
    max_prompt_tokens: int = Field(
        512,
        ge=1,
        description="the training recipe's data.max_prompt_tokens: longer prompts (chat template and "
        "instruction included) are not sampled and are dropped as prompt_too_long, as training skips them",
    )
    chunk_size: int = Field(256, ge=1, description="rows per checkpointed chunk")
    pass_table: str | None = Field(
        None, description="jsonl of {id, solved}: use instead of running the model"
    )
    early_stop: bool = Field(
        False,
        description="sample one attempt at a time and stop a prompt once balancing knows its class (first "
        "right attempt, and one wrong when max_solve_rate < 1); solved then counts the attempts made",
    )
    sample_size: int | None = Field(
        None,
        ge=1,
        description="measure only a stratified sample of this many verified rows (by source); the card "
        "extrapolates the full set and the output is balanced from the sample",
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
    contamination_overlap: float = Field(
        0.2,
        gt=0,
        le=1,
        description="share of a row's 13-grams (26 characters of Chinese) found in the evaluation sets, or "
        "of one evaluation prompt's found in the row, that marks it contaminated",
    )
    heldout_size: int = Field(
        0,
        ge=0,
        description="rows set aside (stratified by source, after decontamination) as heldout.parquet "
        "(and .jsonl with jsonl) for "
        "held-out evaluation of the same sources: never measured for difficulty, never trained on; 0: none",
    )
    synthesis: SynthesisConfig = SynthesisConfig()
    difficulty: DifficultyConfig = DifficultyConfig()


def read_source(source: SourceConfig, num_proc: int, limit: int | None = None) -> Any:
    """Stage 1: a `datasets.Dataset` of candidates (the columns listed in `rlvr/data/sources.py`)."""
    import datasets
    from pyarrow import ArrowInvalid

    paths = [source.path] if isinstance(source.path, str) else list(source.path)
    local = all(Path(p).exists() for p in paths)
    cap = min((x for x in (source.limit, limit) if x is not None), default=None)
    if local:
        try:
            raw = datasets.load_dataset(data_format(paths), data_files=paths, split="train")
        except (datasets.exceptions.DatasetGenerationError, ArrowInvalid) as exc:
            if data_format(paths) == "json":  # one bad line fails the whole file there: read line by line
                return read_json_lines(source, paths, cap)
            cause = exc.__cause__ or exc  # the parser's own error
            raise RecipeError(f"source {source.name!r}: cannot read {paths}: {cause}") from exc
    elif len(paths) == 1 and not any(Path(p).suffix for p in paths):
        raw = datasets.load_dataset(paths[0], split=source.split)  # the hub: needs network access
    else:
        missing = [p for p in paths if not Path(p).exists()]
        raise RecipeError(f"source {source.name!r}: no such file(s) {missing}")
    if cap is not None and cap < len(raw):
        raw = raw.select(range(cap))
    return raw.map(
        record_adapter(source),
        with_indices=True,
        remove_columns=raw.column_names,
        num_proc=_procs(raw, num_proc),
        desc=f"read {source.name}",
    )


def read_json_lines(source: SourceConfig, paths: list[str], limit: int | None) -> Any:
    """Stage 1 for a JSON Lines source `datasets` cannot parse: every good object through the adapter, every
    other line a candidate dropped as `malformed: line N: ...`; blank lines skipped. A source without a
    single JSON object among the lines read is not JSON Lines: a RecipeError."""
    import datasets

    adapt, rows, objects = record_adapter(source), [], 0
    for index, (where, record) in enumerate(islice(_numbered_records(source, paths), limit)):
        if isinstance(record, dict):
            objects += 1
            rows.append(adapt(record, index))
        else:
            problem = (
                record
                if isinstance(record, Exception)
                else f"{_JSON_KINDS.get(type(record), 'null')}, not a JSON object"
            )
            rows.append(candidate(source.name, index, drop=f"malformed: {where}: {problem}"))
    if not objects:
        first = f" ({rows[0]['drop']})" if rows else ""
        raise RecipeError(f"source {source.name!r}: cannot read {paths}: no line is a JSON object{first}")
    return datasets.Dataset.from_list(rows, features=candidate_features())


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def _numbered_records(source: SourceConfig, paths: list[str]) -> Iterator[tuple[str, Any]]:
    """(where, record or its parse error) of every record of the files: where is `line N` (`FILE line N` of
    several files); `schema.file_records` reads them."""
    for path in paths:
        name = f"{Path(path).name} " if len(paths) > 1 else ""
        try:
            records = file_records(Path(path))
        except ValueError as exc:  # a whole-file .json that does not parse; the message names the file
            raise RecipeError(f"source {source.name!r}: cannot read {exc}") from None
        for number, record in records:
            yield f"{name}line {number}", record


def candidate_features() -> Any:
    """The columns of a candidate (`sources.candidate`) as `datasets` features."""
    import datasets

    text = datasets.Value("string")
    columns = ("id", "prompt", "answer", "verifier", "source", "choices", "letter", "meta", "drop")
    return datasets.Features({c: datasets.List(text) if c == "choices" else text for c in columns})


def record_adapter(source: SourceConfig) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """(record, index) -> candidate for one source: its adapter, verifier and license."""
    mapping = {k: getattr(source, k) for k in (*_MAPPING, "meta_fields")}
    adapter = adapter_for(source.adapter, mapping)
    verifier, license = source.verifier or DEFAULT_VERIFIER[source.adapter], source.license

    def adapt(record: dict[str, Any], index: int) -> dict[str, Any]:
        return adapt_record(record, index, source.name, adapter, verifier, license)

    return adapt


def _procs(ds: Any, num_proc: int) -> int | None:
    return num_proc if num_proc > 1 and len(ds) >= 1000 else None


def _first_occurrences(prompts: list[str]) -> tuple[list[int], dict[int, int]]:
    """Indices of the first row of every normalised prompt text, and {later copy: its first row}."""
    seen: dict[str, int] = {}
    first, copies = [], {}
    for i, prompt in enumerate(prompts):
        key = dedup.text_hash(prompt)
        if key in seen:
            copies[i] = seen[key]
        else:
            seen[key] = i
            first.append(i)
    return first, copies


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


@dataclass
class Build:
    """What the stages of one build share: the recipe, the output folder, the data card they fill in, and
    the model (started on first use, once, for synthesis and difficulty)."""

    config: DataBuildConfig
    out: Path
    solve: difficulty.SolveFn | None = None
    sample: SampleFn | None = None
    card: dict[str, Any] = field(
        default_factory=lambda: {"stages": [], "dropped": [], "seconds": {}, "files": []}
    )
    _model: Any = None

    def model(self) -> Any:
        if self._model is None:
            from rlvr.data.pass_at_k import RayModel

            self._model = RayModel(self.config.difficulty, self.config.seed)
        return self._model

    def dropped(self, stage: str, pairs: Any) -> None:
        """Counts (source, reason) pairs this stage dropped into the card (empty reasons are not drops)."""
        for (source, reason), n in sorted(Counter(p for p in pairs if p[1]).items()):
            self.card["dropped"].append({"stage": stage, "source": source, "reason": reason, "rows": n})


Stage = Callable[[Build, Any], Any]  # candidates in (an Arrow dataset or a list of dicts), candidates out


def stage_read(b: Build, _: Any) -> Any:
    """Every source through its adapter; unreadable records are dropped as malformed."""
    import datasets

    c = b.config
    parts = [read_source(s, c.num_proc, c.limit_per_source) for s in c.sources]
    b.card["input_rows"] = {s.name: len(p) for s, p in zip(c.sources, parts, strict=True)}
    ds = datasets.concatenate_datasets(parts)
    b.dropped("read", zip(ds["source"], ds["drop"], strict=True))
    return ds


def stage_open_ended(b: Build, ds: Any) -> Any:
    """Multiple-choice items become open-ended where their stem stands alone (`filters.to_open_ended`)."""
    ds = ds.map(to_open_ended, num_proc=_procs(ds, b.config.num_proc), desc="multiple choice to open-ended")
    # counted from columns: the rows stay in Arrow (a million of them as dicts: gigabytes)
    pairs = list(zip(ds["source"], ds["drop"], strict=True))
    b.dropped("open_ended", ((s, r) for s, r in pairs if r.startswith("mc_")))
    b.card["multiple_choice_converted"] = sum(
        1 for choices, reason in zip(ds["choices"], ds["drop"], strict=True) if choices and not reason
    )
    return ds


def stage_verifiable(b: Build, ds: Any) -> Any:
    """Golds a string-matching verifier can check (`filters.filter_verifiable`)."""
    before = list(ds["drop"])
    ds = ds.map(filter_verifiable, num_proc=_procs(ds, b.config.num_proc), desc="verifiability filter")
    pairs = zip(ds["source"], before, ds["drop"], strict=True)
    b.dropped("verifiable", ((s, r) for s, old, r in pairs if not old))
    return ds


def stage_exact_dedupe(b: Build, ds: Any) -> list[dict[str, Any]]:
    """The surviving rows, first occurrence of each normalised prompt, materialised as dicts; found on the
    prompt column before any row is materialised (`ds[col]` is lazy: index a list)."""
    survivors = ds.select([i for i, reason in enumerate(ds["drop"]) if not reason])
    first, copies = _first_occurrences(list(survivors["prompt"]))
    sources = list(survivors["source"])
    # the reason names the source of the copy that stays: the card shows which sources overlap
    b.dropped("exact_dedupe", ((sources[i], f"exact_duplicate:{sources[j]}") for i, j in copies.items()))
    return survivors.select(first).to_list()


SYNTHESIS_EXAMPLES = 10  # written problems shown in the card, the accepted ones first


def stage_synthesis(b: Build, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New problems written by the model from seed rows, kept when a majority of k solutions agree."""
    syn, seed = b.config.synthesis, b.config.seed
    seeds = random.Random(seed).sample(rows, min(syn.seeds, len(rows)))
    sample = b.sample or b.model().sample
    new_rows, rejected, fates = synthesize(seeds, sample, syn.k, syn.per_seed, syn.template)
    b.dropped("synthesis", (("synthetic", reason) for reason, n in rejected.items() for _ in range(n)))
    b.card["synthesized"] = len(new_rows)
    kept = [f for f in fates if f["fate"] == "kept"]
    b.card["synthesis"] = {
        "seeds": len(seeds),
        "written": len(seeds) * syn.per_seed,
        "empty": rejected["synthesis_empty"],
        "with_a_majority_answer": sum(f["fate"] != "synthesis_no_majority" for f in fates),
        "passed_the_filter": len(new_rows),
        "examples": (kept + [f for f in fates if f["fate"] != "kept"])[:SYNTHESIS_EXAMPLES],
    }
    return rows + new_rows


def stage_near_dedupe(b: Build, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MinHash near duplicates (an exact copy of a synthesised problem is one too, at Jaccard 1)."""
    near = dedup.near_duplicates([r["prompt"] for r in rows], b.config.near_duplicate_threshold)
    pairs = ((rows[i]["source"], f"near_duplicate:{rows[j]['source']}") for i, j in near.items())
    b.dropped("near_dedupe", pairs)
    return [r for i, r in enumerate(rows) if i not in near]


def eval_texts(eval_set: EvalSetConfig) -> tuple[list[str], int]:
    """The prompt texts of an evaluation set (the first of its `field`s each record has) and how many
    records had none of them (reported in the card, not silently skipped)."""
    fields = [eval_set.field] if isinstance(eval_set.field, str) else eval_set.field
    texts, missing = [], 0
    for _, record in file_records(Path(eval_set.path)):
        found = next((record[f] for f in fields if isinstance(record, dict) and record.get(f)), None)
        if isinstance(found, str):
            texts.append(found)
        else:
            missing += 1
    return texts, missing


def stage_decontaminate(b: Build, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows overlapping an evaluation set are dropped (reason `contaminated:<set>`; `dedup.Contamination`)."""
    contamination = dedup.Contamination(min_overlap=b.config.contamination_overlap)
    report: list[dict[str, Any]] = []
    for eval_set in b.config.decontaminate:
        name = eval_set.name or Path(eval_set.path).name.split(".")[0]
        if eval_set.optional and not Path(eval_set.path).exists():
            report.append({"name": name, "path": eval_set.path, "prompts": None, "note": "absent (optional)"})
            continue
        texts, missing = eval_texts(eval_set)
        contamination.add(texts, name)
        report.append({"name": name, "path": eval_set.path, "prompts": len(texts), "without_text": missing})
    hits = [contamination.which(r["prompt"]) for r in rows]
    for entry in report:
        entry["rows_dropped"] = sum(hit == entry["name"] for hit in hits)
    b.card["decontamination"] = report
    pairs = ((r["source"], f"contaminated:{hit}") for r, hit in zip(rows, hits, strict=True) if hit)
    b.dropped("decontaminate", pairs)
    return [r for r, hit in zip(rows, hits, strict=True) if not hit]


def stage_heldout(b: Build, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`heldout_size` rows, stratified by source, to `heldout.parquet` (and `heldout.jsonl` with `jsonl`);
    the rest go on to training."""
    held = difficulty.stratified_sample(rows, min(b.config.heldout_size, len(rows)), b.config.seed)
    ids = {r["id"] for r in held}
    for suffix in ("parquet", "jsonl") if b.config.jsonl else ("parquet",):
        write_prompt_file([prompt_row(r) for r in held], b.out / f"heldout.{suffix}")
        b.card["files"].append(f"heldout.{suffix}")
    by_source = dict(sorted(Counter(r["source"] for r in held).items()))
    b.card["heldout"] = {"rows": len(held), "by_source": by_source}
    b.dropped("heldout", ((r["source"], "held_out") for r in held))
    return [r for r in rows if r["id"] not in ids]


def stage_difficulty(b: Build, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pass@k of every row with the current model, in resumable chunks (`difficulty.estimate`)."""
    d, verified = b.config.difficulty, len(rows)
    if d.sample_size and d.sample_size < len(rows):
        sample = difficulty.stratified_sample(rows, d.sample_size, b.config.seed)
        chosen = {r["id"] for r in sample}
        b.dropped("difficulty", ((r["source"], "not_in_sample") for r in rows if r["id"] not in chosen))
        rows = sample
    outcomes, counts = difficulty.estimate(rows, b.solve or solver(d, b.model), d.k, b.out, d.chunk_size)
    skipped = [r for r in rows if outcomes[r["id"]].get("skipped")]
    b.dropped("difficulty", ((r["source"], outcomes[r["id"]]["skipped"]) for r in skipped))
    rows = [r for r in rows if not outcomes[r["id"]].get("skipped")]
    b.card["difficulty_chunks"] = {key: counts[key] for key in ("chunks_done", "chunks_skipped")}
    b.card["difficulty_run"] = {"early_stop": d.early_stop, "k": d.k, "max_new_tokens": d.max_new_tokens}
    b.card["difficulty_run"] |= difficulty.run_report(counts, d.k, verified)
    rows = [{**r, **_difficulty_columns(outcomes[r["id"]])} for r in rows]
    b.card["solve_histogram"] = dict(sorted(Counter(r["solved"] for r in rows).items()))
    return rows


def _difficulty_columns(outcome: dict[str, Any]) -> dict[str, int]:
    return {"solved": outcome["solved"], "attempts": outcome["attempts"]}


def stage_balance(b: Build, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Simple items out, then about `unsolved_fraction` never solved, stratified by source."""
    d = b.config.difficulty
    chosen, b.card["balance"] = difficulty.balance(
        rows, d.k, d.target_size, d.unsolved_fraction, d.max_solve_rate, b.config.seed
    )
    kept = {r["id"] for r in chosen}
    left = (r for r in rows if r["id"] not in kept)
    b.dropped("balance", ((r["source"], _balance_reason(r, d)) for r in left))
    return chosen


def _balance_reason(row: dict[str, Any], d: DifficultyConfig) -> str:
    return "too_easy" if row["solved"] / d.k > d.max_solve_rate else "not_sampled"


def stages(config: DataBuildConfig) -> list[tuple[str, Stage]]:
    """The pipeline of a recipe, in order (synthesis, difficulty and balance when enabled)."""
    pipeline: list[tuple[str, Stage]] = [
        ("read", stage_read),
        ("open_ended", stage_open_ended),
        ("verifiable", stage_verifiable),
        ("exact_dedupe", stage_exact_dedupe),
    ]
    if config.synthesis.enabled:
        pipeline.append(("synthesis", stage_synthesis))
    pipeline += [("near_dedupe", stage_near_dedupe), ("decontaminate", stage_decontaminate)]
    if config.heldout_size:
        pipeline.append(("heldout", stage_heldout))
    if config.difficulty.enabled:
        pipeline += [("difficulty", stage_difficulty), ("balance", stage_balance)]
    return pipeline


def _live(rows: Any) -> int:
    """Rows still in the pipeline: a list holds only those; an Arrow dataset marks the rest with `drop`."""
    return len(rows) if isinstance(rows, list) else sum(1 for reason in rows["drop"] if not reason)


def _build(
    config: DataBuildConfig, solve: difficulty.SolveFn | None, sample: SampleFn | None
) -> dict[str, Any]:
    _check_model(config, solve, sample)
    b = Build(config, Path(config.output_dir), solve, sample)
    b.out.mkdir(parents=True, exist_ok=True)
    start, rows = time.perf_counter(), None
    for name, stage in stages(config):
        t0 = time.perf_counter()
        rows = stage(b, rows)
        b.card["stages"].append({"stage": name, "rows_out": _live(rows)})
        b.card["seconds"][name] = round(time.perf_counter() - t0, 2)
    describe_output(rows, b.card, config.seed)
    b.card["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    b.card["seconds"]["total"] = round(time.perf_counter() - start, 2)
    write_outputs(rows, b.out, config, b.card)
    return b.card


def _check_model(config: DataBuildConfig, solve: Any, sample: Any) -> None:
    """A build that needs the model and names none stops before reading anything."""
    d = config.difficulty
    needs_model = (d.enabled and solve is None and not d.pass_table) or (
        config.synthesis.enabled and sample is None
    )
    if needs_model and not (d.model or d.preset):
        raise RecipeError(
            "difficulty.model (a checkpoint folder) or difficulty.preset is needed to measure pass@k or to "
            "synthesise; or set difficulty.pass_table, or difficulty.enabled=false"
        )


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
    stop = difficulty.decided(d.k, d.max_solve_rate) if d.early_stop else None
    return lambda rows: ray_model.solve([prompt_row(r) for r in rows], stop)
