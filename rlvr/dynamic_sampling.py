"""Dynamic sampling (DAPO, Yu et al. 2025, "over-sample and filter"): groups whose n samples all got the same
reward carry no gradient under a group baseline, so they are dropped and the step is refilled with fresh
prompts until it holds `prompts_per_step` informative groups, or a cap on extra rounds is hit.

`collect_groups` is the loop; `draw(count, offset)` is the caller's generate-and-verify of `count` new prompts
(the offset numbers them within the step, for their seeds). It never loops forever and never fails for lack
of signal: at the cap it returns what it has and says so in the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rlvr.sampler import ScoredRollout

Draw = Callable[[int, int], list[ScoredRollout]]


def groups_of(scored: Sequence[ScoredRollout], n: int) -> list[list[ScoredRollout]]:
    """The rollouts in groups of the n samples of one prompt (they come prompt-major)."""
    return [list(scored[i : i + n]) for i in range(0, len(scored), n)]


def informative(group: Sequence[ScoredRollout]) -> bool:
    """A group whose rewards differ: only such a group moves the policy under a group baseline."""
    return len({s.reward for s in group}) > 1


def collect_groups(
    draw: Draw, want: int, n: int, dynamic: bool, max_rounds: int
) -> tuple[list[ScoredRollout], list[ScoredRollout], dict[str, float]]:
    """`want` groups of n scored rollouts to train on: the first draw as is, or with `dynamic` only
    informative groups, refilling over at most `max_rounds` draws in all. Each refill asks for the missing
    groups divided by the informative rate seen so far (at least the missing number, at most 4× `want`).

    Returns (the groups to train on, every rollout drawn — what the policy's reward is measured on —, metrics:
    groups kept and dropped, rounds used, extra prompts generated beyond `want`, and whether the cap left the
    batch short, `dynamic_sampling_short` = 1)."""
    kept: list[list[ScoredRollout]] = []
    everything: list[ScoredRollout] = []
    drawn = dropped = rounds = 0
    ask = want
    while True:
        rounds += 1
        scored = draw(ask, drawn)
        everything += scored
        for group in groups_of(scored, n):
            if not dynamic or informative(group):
                kept.append(group)
            else:
                dropped += 1
        drawn += ask
        missing = want - len(kept)
        if not dynamic or missing <= 0 or rounds >= max_rounds:
            break
        rate = max(len(kept) / drawn, 1 / (4 * want))
        ask = min(max(missing, math.ceil(missing / rate)), 4 * want)
    metrics = {
        "groups_kept": min(len(kept), want),
        "groups_dropped": dropped,
        "sampling_rounds": rounds,
        "sampling_extra_prompts": drawn - want,
        "dynamic_sampling_short": float(dynamic and len(kept) < want),
    }
    return [s for group in kept[:want] for s in group], everything, metrics
