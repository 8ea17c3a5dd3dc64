"""A built-in verifiable task for CPU runs: multi-step integer arithmetic with worked solutions.

    prompt   "47+38-9="
    solution "47+38=85,85-9=76"        (what `rlvr sft` teaches; the last number is the answer)
    answer   "76"

Problems are a pure function of (seed, index), so a split is reproducible anywhere. A recipe names a split as
`task://arithmetic?n=2000&seed=1` wherever it takes a prompt file (`data.train_files`, `data.eval_files`,
`sft.data`, `rlvr eval --data`). Options: `n`, `seed`, `steps` (operations per problem), `max_operand`, and
`direct` (percent of SFT solutions that give the bare answer, "=76", instead of working it out: the model
learns both habits, and RL has to find out which one pays).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from rlvr.data.schema import PromptRow

SCHEME = "task://"


@dataclass(frozen=True)
class ArithmeticTask:
    steps: int = 2  # operations per problem
    max_operand: int = 99
    direct: int = 0  # percent of worked solutions replaced by the bare answer ("=76"): a worse habit for SFT
    slips: int = 0  # percent of worked solutions with one step's result off by one: a sloppy teacher for SFT

    def problem(self, seed: int, index: int, slip_at: int | None = None) -> tuple[str, str, int]:
        """(prompt, worked solution, answer) of problem `index` of split `seed`.

        With `slip_at`, the worked solution gets that step's result one too high and carries the error on (the
        prompt and the returned answer stay right)."""
        rng = random.Random(f"arithmetic:{seed}:{index}:{self.steps}:{self.max_operand}")
        value = rng.randint(1, self.max_operand)
        prompt, lines, shown = str(value), [], value
        for step in range(self.steps):
            op = rng.choice("+-")
            operand = rng.randint(1, self.max_operand if op == "+" else max(1, min(value, self.max_operand)))
            new = value + operand if op == "+" else value - operand
            shown_new = (shown + operand if op == "+" else shown - operand) + (step == slip_at)
            lines.append(f"{shown}{op}{operand}={shown_new}")
            prompt += f"{op}{operand}"
            value, shown = new, shown_new
        return prompt + "=", ",".join(lines), value

    def rows(self, n: int, seed: int) -> list[PromptRow]:
        out = []
        for i in range(n):
            draw = random.Random(f"teacher:{seed}:{i}")
            slip_at = draw.randrange(self.steps) if draw.randrange(100) < self.slips else None
            prompt, solution, answer = self.problem(seed, i, slip_at)
            if random.Random(f"direct:{seed}:{i}").randrange(100) < self.direct:
                solution = f"={answer}"  # correct, but guessed in one go instead of worked out
            meta = {"solution": solution, "seed": seed, "index": i, "slip_at": slip_at}
            out.append(
                PromptRow(f"arith-{seed}-{i}", prompt, str(answer), "numeric", "task:arithmetic", meta)
            )
        return out


def is_task_source(source: str) -> bool:
    return str(source).startswith(SCHEME)


def task_rows(source: str) -> list[PromptRow]:
    """Rows of a `task://arithmetic?n=...&seed=...` source; a bad name or option raises ValueError."""
    url = urlparse(str(source))
    if url.netloc != "arithmetic":
        raise ValueError(f"unknown task {url.netloc!r} in {source!r}; known: arithmetic")
    options = {k: v[-1] for k, v in parse_qs(url.query).items()}
    allowed = {"n", "seed", "steps", "max_operand", "direct", "slips"}
    if set(options) - allowed:
        raise ValueError(
            f"{source!r}: unknown option(s) {sorted(set(options) - allowed)}; allowed {sorted(allowed)}"
        )
    try:
        values = {k: int(v) for k, v in options.items()}
    except ValueError as exc:
        raise ValueError(f"{source!r}: options must be integers ({exc})") from None
    task = ArithmeticTask(
        values.get("steps", 2), values.get("max_operand", 99), values.get("direct", 0), values.get("slips", 0)
    )
    return task.rows(values.get("n", 1000), values.get("seed", 0))
