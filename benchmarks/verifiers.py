"""Verifier throughput, latency and answer-checking quality on real data.

Performance: MATH-style (response, gold) pairs from MATH train: the reference solution (which ends in its own
`\\boxed{}`) paired with its gold answer, and every other pair with a different problem's solution (a wrong
answer), so the mix of "ok" and "wrong" resembles RL rollouts. Every response and gold in a measurement is
distinct, so no cache is warm from an earlier pair. Measured, each on the same pairs:

  math-verify      `math_verify.verify(math_verify.parse(gold), math_verify.parse(response))`, one process
  rlvr inline      `get_verifier("math").verify(response, gold)`, one process, no pool
  VerifierPool xN  a fresh pool with N worker processes: `verify_batch(pairs)` for answers/s; then one
                   `verify()` at a time on a second, disjoint set of pairs for the latency percentiles

Real answers: rlvr and math-verify side by side, with false positives and negatives, on labelled public pairs
(tests/data; see verifier_quality.py).

Quality: for every gold answer (GSM8K train+test: the text after '####'; MATH train: the `answer` field),
`verify("... \\boxed{" + gold + "}", gold)` must be "ok", and two perturbed golds must not be: the last digit
changed (+1 mod 10) and the sign flipped. Failures are listed. The default mode checks a seeded sample of
golds; `--full` checks all of them.

    python benchmarks/verifiers.py           # performance on 2,000 pairs + quality on 2,000 sampled golds
    python benchmarks/verifiers.py --full    # performance + quality over every gold (about 60,000 checks)

Data comes from $RLVR_DATA_DIR (default: ../shared/data beside the repository). Results go to
benchmarks/results/verifiers.json: the latest performance run, and quality under "sample" or "full" (the
other mode's section is kept).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import random
import runpy
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This script is named like the package it measures; run as a file, its own folder comes first on the import
# path and `import verifiers` would find the script itself.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

from verifiers import VerifierPool, get_verifier  # noqa: E402
from verifiers.quality import flip_sign, perturb_last_digit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "verifiers.json"
TARGET_ANSWERS_PER_S = 2_000.0
TARGET_P99_MS = 1_000.0
TARGET_GOLD_OK = 0.999
TARGET_PERTURBED_WRONG = 0.99

Pair = tuple[str, str]


# ---------------------------------------------------------------- data


def data_dir() -> Path:
    return Path(os.environ.get("RLVR_DATA_DIR", REPO.parent / "shared" / "data"))


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(
            f"error: {path.name} not found in {path.parent}; set RLVR_DATA_DIR to the folder with the data"
        )
    return path


def math_records() -> list[dict[str, Any]]:
    return [
        r
        for r in read_jsonl(require(data_dir() / "math_train.jsonl"))
        if r.get("solution") and r.get("answer")
    ]


@dataclass
class Workload:
    pairs: list[Pair]
    kinds: list[str]  # "correct", "near_miss" (its own boxed answer, last digit changed) or "unrelated"

    @property
    def labels(self) -> list[bool]:
        return [kind == "correct" for kind in self.kinds]


def last_boxed_span(text: str) -> tuple[int, int] | None:
    """Start and end of the contents of the last brace-matched `\\boxed{...}` in a reference solution."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth < 0:
            return begin, i
    return None


GROUP = 8  # GRPO samples per prompt in the "groups" workload


def math_workload(records: Sequence[dict[str, Any]], n: int, offset: int, group: int) -> tuple[Workload, int]:
    """n (response, gold) pairs from the records at `offset` on, and how many records they used.

    `group` consecutive pairs share a gold, as the n samples of one prompt do in GRPO (group 1: every gold
    is distinct). The responses cycle through a fixed mix: half the record's own solution (correct), a
    quarter its own solution with the boxed answer's last digit changed (a near miss, the same kind of
    answer; a different change per sample), a quarter the solution of another record (an unrelated answer).
    Apart from the correct ones, no two responses are the same, so only golds can be cached."""
    targets = records[offset : offset + math.ceil(n / group)]
    others = records[offset + len(targets) : offset + len(targets) + n]
    if len(others) < n:
        sys.exit(f"error: math_train.jsonl has too few usable records for {n} pairs (try a smaller --pairs)")
    pairs, kinds = [], []
    for i in range(n):
        record = targets[i // group]
        solution, kind = record["solution"], ("correct", "correct", "near_miss", "unrelated")[i % 4]
        response = solution
        if kind == "near_miss":
            span = last_boxed_span(solution)
            step = 1 + (i % group) // 4 % 9
            changed = perturb_last_digit(solution[span[0] : span[1]], step) if span else None
            if span is None or changed is None:
                kind = "unrelated"
            else:
                response = solution[: span[0]] + changed + solution[span[1] :]
        if kind == "unrelated":
            response = others[i]["solution"]
        pairs.append((response, str(record["answer"])))
        kinds.append(kind)
    return Workload(pairs, kinds), len(targets) + len(others)


@dataclass(frozen=True)
class Gold:
    source: str  # "gsm8k_train", "gsm8k_test" or "math_train"
    index: int  # line in its file
    answer: str


def golds() -> list[Gold]:
    found = []
    for split in ("train", "test"):
        for i, record in enumerate(read_jsonl(require(data_dir() / f"gsm8k_{split}.jsonl"))):
            found.append(Gold(f"gsm8k_{split}", i, str(record["answer"]).split("####")[-1].strip()))
    for i, record in enumerate(read_jsonl(require(data_dir() / "math_train.jsonl"))):
        found.append(Gold("math_train", i, str(record["answer"]).strip()))
    return [gold for gold in found if gold.answer]


# ---------------------------------------------------------------- performance


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Row:
    method: str
    workers: int
    answers_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    correct: list[bool]
    statuses: dict[str, int]
    cpu_ms_per_answer: float = math.nan  # CPU time of every process involved, per answer

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "workers": self.workers,
            "answers_per_s": round(self.answers_per_s, 1),
            "cpu_ms_per_answer": round(self.cpu_ms_per_answer, 4),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "statuses": self.statuses,
        }


def timed_each(
    check: Callable[[str, str], tuple[bool, str]], pairs: Sequence[Pair]
) -> tuple[list[float], list]:
    latencies, outcomes = [], []
    for response, gold in pairs:
        started = time.perf_counter()
        outcomes.append(check(response, gold))
        latencies.append(time.perf_counter() - started)
    return latencies, outcomes


def row_from(
    method: str,
    workers: int,
    seconds: float,
    cpu_seconds: float,
    latencies: list[float],
    outcomes: list[tuple[bool, str]],
) -> Row:
    ordered, n = sorted(latencies), len(outcomes)
    return Row(
        method,
        workers,
        n / seconds,
        1e3 * percentile(ordered, 50),
        1e3 * percentile(ordered, 99),
        1e3 * ordered[-1],
        [ok for ok, _ in outcomes],
        dict(Counter(status for _, status in outcomes)),
        1e3 * cpu_seconds / n,
    )


def cpu_seconds(pids: Sequence[int] = ()) -> float:
    """CPU time (user + system) of this process and of the given other processes."""
    total = time.process_time()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return math.nan  # not Linux, or the process is gone
    return total


def bench_math_verify(pairs: Sequence[Pair], warmup: Sequence[Pair]) -> Row:
    from math_verify import parse, verify

    golds: dict[str, Any] = {}  # parsed golds are cached, as rlvr's math verifier caches them

    def check(response: str, gold: str) -> tuple[bool, str]:
        try:
            if gold not in golds:
                golds[gold] = parse(f"${gold}$")
            ok = bool(verify(golds[gold], parse(response)))
        except Exception:
            return False, "error"
        return ok, "ok" if ok else "wrong"

    timed_each(check, warmup)
    golds.clear()
    started, cpu = time.perf_counter(), cpu_seconds()
    latencies, outcomes = timed_each(check, pairs)
    return row_from("math-verify", 1, time.perf_counter() - started, cpu_seconds() - cpu, latencies, outcomes)


def bench_inline(pairs: Sequence[Pair], warmup: Sequence[Pair]) -> Row:
    verifier = get_verifier("math")

    def check(response: str, gold: str) -> tuple[bool, str]:
        result = verifier.verify(response, gold)
        return result.correct, result.status

    timed_each(check, warmup)
    started, cpu = time.perf_counter(), cpu_seconds()
    latencies, outcomes = timed_each(check, pairs)
    return row_from("rlvr inline", 1, time.perf_counter() - started, cpu_seconds() - cpu, latencies, outcomes)


def bench_pool(
    workers: int, pairs: Sequence[Pair], latency_pairs: Sequence[Pair], warmup: Sequence[Pair]
) -> Row:
    with VerifierPool("math", num_workers=workers) as pool:
        pool.verify_batch(warmup)  # first use of sympy and the LaTeX grammar in every worker
        pids = pool.worker_pids
        started, cpu = time.perf_counter(), cpu_seconds(pids)
        results = pool.verify_batch(pairs)
        seconds, cpu = time.perf_counter() - started, cpu_seconds(pids) - cpu

        def check(response: str, gold: str) -> tuple[bool, str]:
            result = pool.verify(response, gold)
            return result.correct, result.status

        latencies, _ = timed_each(check, latency_pairs)
    outcomes = [(r.correct, r.status) for r in results]
    return row_from(f"VerifierPool x{workers}", workers, seconds, cpu, latencies, outcomes)


WARMUP_PAIRS = 300
WORKLOADS = {"distinct": 1, "groups": GROUP}  # name -> pairs per gold


def workloads(kind: str, n_pairs: int, seed: int) -> tuple[Workload, Workload, Workload]:
    """The measured pairs, a disjoint set for pool latency, and a disjoint warm-up set."""
    records = math_records()
    random.Random(seed).shuffle(records)
    group = WORKLOADS[kind]
    measured, used = math_workload(records, n_pairs, 0, group)
    latency, more = math_workload(records, n_pairs, used, group)
    warmup, _ = math_workload(records, WARMUP_PAIRS, used + more, group)
    return measured, latency, warmup


def measure_one(kind: str, method: str, workers: int, n_pairs: int, seed: int) -> dict[str, Any]:
    """One row, in this (fresh) process."""
    measured, latency, warmup = workloads(kind, n_pairs, seed)
    if method == "math-verify":
        row = bench_math_verify(measured.pairs, warmup.pairs)
    elif method == "inline":
        row = bench_inline(measured.pairs, warmup.pairs)
    else:
        row = bench_pool(workers, measured.pairs, latency.pairs, warmup.pairs)
    return {"row": row.summary(), "correct": row.correct}


def measure_isolated(kind: str, method: str, workers: int, n_pairs: int, seed: int) -> dict[str, Any]:
    """Runs `measure_one` in a fresh interpreter, so that no method finds caches warmed by another."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", method, "--workload", kind]
    command += ["--workers", str(workers), "--pairs", str(n_pairs), "--seed", str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"error: measuring {method} on {kind} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def performance(n_pairs: int, pool_workers: Sequence[int], seed: int) -> dict[str, Any]:
    print(
        f"performance: {n_pairs} MATH-style pairs per workload, each method in a fresh process after "
        f"{WARMUP_PAIRS} warm-up pairs; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    runs = [("math-verify", 1), ("inline", 1)] + [("pool", workers) for workers in pool_workers]
    table, workload_info, disagreements = [], {}, []
    for kind in WORKLOADS:
        measured, _, _ = workloads(kind, n_pairs, seed)
        workload_info[kind] = {"pairs_per_gold": WORKLOADS[kind], "mix": dict(Counter(measured.kinds))}
        measurements = []
        for method, workers in runs:
            print(f"  {kind}: {method}{f' x{workers}' if method == 'pool' else ''} ...", flush=True)
            measurements.append(measure_isolated(kind, method, workers, n_pairs, seed))
        reference, mine = measurements[0]["correct"], measurements[1]["correct"]
        for measurement in measurements:
            row, correct = {"workload": kind, **measurement["row"]}, measurement["correct"]
            row["agrees_with_math_verify"] = round(
                sum(a == b for a, b in zip(correct, reference, strict=True)) / n_pairs, 4
            )
            row["matches_pair_label"] = round(
                sum(a == b for a, b in zip(correct, measured.labels, strict=True)) / n_pairs, 4
            )
            table.append(row)
        seen = {(d["response_tail"], d["gold"]) for d in disagreements}
        for i in range(n_pairs):
            tail, gold = measured.pairs[i][0][-160:], measured.pairs[i][1]
            if mine[i] != reference[i] and (tail, gold) not in seen:
                seen.add((tail, gold))
                disagreements.append(
                    {
                        "workload": kind,
                        "kind": measured.kinds[i],
                        "response_tail": tail,
                        "gold": gold,
                        "math_verify": reference[i],
                        "rlvr": mine[i],
                    }
                )
    met = {
        kind: any(
            row["answers_per_s"] >= TARGET_ANSWERS_PER_S and row["p99_ms"] < TARGET_P99_MS
            for row in table
            if row["workload"] == kind and row["method"].startswith("VerifierPool")
        )
        for kind in WORKLOADS
    }
    return {
        "pairs": n_pairs,
        "workloads": workload_info,
        "warmup_pairs": WARMUP_PAIRS,
        "latency": "one verify() call at a time (pool: a round trip to a worker), on a disjoint set of pairs",
        "rows": table,
        "rlvr_vs_math_verify_disagreements": disagreements,
        "targets": {"answers_per_s": TARGET_ANSWERS_PER_S, "p99_ms": TARGET_P99_MS, "met": met},
    }


# ---------------------------------------------------------------- quality


@dataclass
class Check:
    kind: str  # "gold", "last_digit" or "sign"
    gold: Gold
    reference: str
    response: str


def quality_checks(selected: Iterable[Gold]) -> list[Check]:
    checks = []
    for gold in selected:
        checks.append(Check("gold", gold, gold.answer, f"... \\boxed{{{gold.answer}}}"))
        for kind, perturb in (("last_digit", perturb_last_digit), ("sign", flip_sign)):
            changed = perturb(gold.answer)
            if changed is not None and changed != gold.answer:
                checks.append(Check(kind, gold, gold.answer, f"... \\boxed{{{changed}}}"))
    return checks


def run_checks(pool: VerifierPool, checks: Sequence[Check], chunk: int = 4_000) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(checks), chunk):
        part = checks[start : start + chunk]
        results += pool.verify_batch([(c.response, c.reference) for c in part])
        print(f"    {len(results)}/{len(checks)}", flush=True)
    return results


def quality(verifier: str, selected: list[Gold], workers: int) -> dict[str, Any]:
    checks = quality_checks(selected)
    started = time.perf_counter()
    with VerifierPool(verifier, num_workers=workers) as pool:
        results = run_checks(pool, checks)
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {"golds": len(selected), "checks": len(checks), "seconds": round(seconds, 1)}
    for kind, want_ok in (("gold", True), ("last_digit", False), ("sign", False)):
        mine = [(c, r) for c, r in zip(checks, results, strict=True) if c.kind == kind]
        failures = [
            {
                "source": c.gold.source,
                "line": c.gold.index,
                "gold": c.reference,
                "response": c.response[4:],
                "status": r.status,
                "extracted": r.extracted,
                "detail": r.detail,
            }
            for c, r in mine
            if (r.status == "ok") != want_ok
        ]
        rate = 1 - len(failures) / len(mine) if mine else math.nan
        by_source = Counter(f["source"] for f in failures)
        report[kind] = {
            "n": len(mine),
            "ok_rate" if want_ok else "wrong_rate": round(rate, 6),
            "failures": len(failures),
            "failures_by_source": dict(by_source),
            "statuses": dict(Counter(r.status for _, r in mine)),
            "failure_list": failures,
        }
    report["targets_met"] = report["gold"]["ok_rate"] >= TARGET_GOLD_OK and all(
        report[k]["wrong_rate"] >= TARGET_PERTURBED_WRONG for k in ("last_digit", "sign") if report[k]["n"]
    )
    return report


# ---------------------------------------------------------------- output


def print_performance(perf: dict[str, Any]) -> None:
    print(f"\nThroughput and latency, {perf['pairs']} MATH-style pairs per workload")
    for kind, info in perf["workloads"].items():
        print(f"  {kind}: {info['pairs_per_gold']} pair(s) per gold, {info['mix']}")
    print(f"  latency: {perf['latency']}")
    print("  CPU ms/ans: CPU time of every process involved (pool: parent + workers) per answer")
    header = (
        f"{'workload':<9} {'method':<16} {'workers':>7} {'answers/s':>10} {'CPU ms/ans':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'=math-verify':>12} {'=label':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in perf["rows"]:
        print(
            f"{row['workload']:<9} {row['method']:<16} {row['workers']:>7} {row['answers_per_s']:>10.0f} "
            f"{row['cpu_ms_per_answer']:>10.3f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['max_ms']:>8.1f} {row['agrees_with_math_verify']:>12.2%} {row['matches_pair_label']:>7.2%}"
        )
    target = perf["targets"]
    verdicts = ", ".join(f"{kind} {'met' if met else 'NOT met'}" for kind, met in target["met"].items())
    print(
        f"target >= {target['answers_per_s']:.0f} answers/s and p99 < {target['p99_ms']:.0f} ms: {verdicts}"
    )
    print(f"rlvr and math-verify disagree on {len(perf['rlvr_vs_math_verify_disagreements'])} distinct pairs")


def print_quality(name: str, report: dict[str, Any], show: int) -> None:
    print(
        f"\nQuality, verifier {name!r}: {report['golds']} golds, "
        f"{report['checks']} checks in {report['seconds']} s"
    )
    for kind, label, key in (
        ("gold", "gold boxed -> ok", "ok_rate"),
        ("last_digit", "last digit changed -> not ok", "wrong_rate"),
        ("sign", "sign flipped -> not ok", "wrong_rate"),
    ):
        part = report[kind]
        print(
            f"  {label:<30} {part[key]:>9.4%} of {part['n']:>6}  "
            f"failures {part['failures']:>4} {part['failures_by_source']}"
        )
        for failure in part["failure_list"][:show]:
            print(
                f"      {failure['source']}:{failure['line']}  gold {failure['gold'][:60]!r}  "
                f"response {failure['response'][:60]!r} -> {failure['status']}"
            )
        if part["failures"] > show:
            print(f"      ... {part['failures'] - show} more in the JSON")
    print(
        f"  targets (gold ok >= {TARGET_GOLD_OK:.1%}, perturbed not ok >= {TARGET_PERTURBED_WRONG:.0%}): "
        f"{'met' if report['targets_met'] else 'NOT met'}"
    )


def machine() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpus_usable": affinity,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="quality over every gold, not a sample")
    parser.add_argument("--pairs", type=int, default=2_000, help="MATH-style pairs for the performance runs")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="VerifierPool sizes to measure"
    )
    parser.add_argument("--sample", type=int, default=2_000, help="golds checked without --full")
    parser.add_argument(
        "--show", type=int, default=15, help="failures printed per check (all go to the JSON)"
    )
    parser.add_argument("--skip-performance", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-real", action="store_true", help="skip the real-answer quality table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--measure", choices=["math-verify", "inline", "pool"], help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=list(WORKLOADS), default="distinct", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # internal: one row in a fresh process, as JSON on the last line of stdout
        print(json.dumps(measure_one(args.workload, args.measure, args.workers[0], args.pairs, args.seed)))
        return 0

    output: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    output["machine"] = machine()
    output["data_files"] = ["gsm8k_train.jsonl", "gsm8k_test.jsonl", "math_train.jsonl"]
    if not args.skip_real:  # a module beside this script, whose folder is off the import path (see above)
        output["real_answers"] = runpy.run_path(str(_HERE / "verifier_quality.py"))["section"]()
    if not args.skip_performance:
        perf = performance(args.pairs, args.workers, args.seed)
        perf["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        output["performance"] = perf
        print_performance(perf)
    if not args.skip_quality:
        everything = golds()
        selected = (
            everything
            if args.full
            else random.Random(args.seed).sample(everything, min(args.sample, len(everything)))
        )
        mode = "full" if args.full else "sample"
        gsm8k = [g for g in selected if g.source.startswith("gsm8k")]
        print(
            f"\nquality ({mode}): {len(selected)} golds "
            f"({len(gsm8k)} GSM8K, {len(selected) - len(gsm8k)} MATH)",
            flush=True,
        )
        section = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "math": quality("math", selected, 2)}
        section["numeric_on_gsm8k"] = quality("numeric", gsm8k, 2)
        output.setdefault("quality", {})[mode] = section
        print_quality("math", section["math"], args.show)
        print_quality("numeric (GSM8K golds)", section["numeric_on_gsm8k"], args.show)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(args.out)
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":  # required: the pool starts its workers with forkserver, which imports __main__
    sys.exit(main())
