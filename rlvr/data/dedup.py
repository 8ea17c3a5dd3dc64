"""Dataset builder, stage 4: exact and near-duplicate removal, and decontamination against evaluation sets.

Text is compared as tokens: runs of letters and digits, and each CJK character on its own (Chinese has no
spaces between words, so a "word" n-gram of Chinese is an n-character span); full-width forms count as their
ASCII ones.

- exact: the hash of the normalised prompt (lower case, punctuation and spacing removed);
- near: MinHash over word 5-gram shingles with LSH banding, confirmed by the estimated Jaccard similarity
  (>= `threshold`); of a duplicate pair the row that comes later in the input is dropped;
- decontamination: a row is dropped when at least `min_overlap` (20%) of its word 13-grams (26-character
  spans of Chinese) occur in the evaluation prompts, or it holds that share of one evaluation prompt's
  (a prompt shorter than n words is compared whole).
All three are deterministic and keep the first occurrence.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from rlvr.data.fields import halfwidth

_HAN = "\u3400-\u4dbf\u4e00-\u9fff"
# one CJK character, or a run of word characters that are not CJK (linear: one character class per branch)
_TOKEN = re.compile(rf"[{_HAN}]|[^\W{_HAN}]+")
_HAN_CHAR = re.compile(rf"[{_HAN}]")
_MERSENNE = np.uint64((1 << 61) - 1)


def tokens(text: str) -> list[str]:
    """The words of `text` for comparison: lower case, full-width folded, punctuation dropped, CJK per
    character."""
    return _TOKEN.findall(halfwidth(text).lower())


def normalise(text: str) -> str:
    return " ".join(tokens(text))


def text_hash(text: str) -> str:
    return hashlib.sha1(normalise(text).encode()).hexdigest()


def ngrams(text: str, n: int) -> set[str]:
    words = tokens(text)
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def _hash64(items: Iterable[str]) -> np.ndarray:
    return np.array(
        [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in items],
        dtype=np.uint64,
    )


class MinHasher:
    """`num_perm` universal hashes (a·x + b mod 2^61−1) of 64-bit shingle hashes; bands of `rows` rows."""

    def __init__(self, num_perm: int = 64, rows: int = 4, shingle: int = 5, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, (1 << 61) - 1, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, (1 << 61) - 1, num_perm, dtype=np.uint64)
        self.rows, self.shingle = rows, shingle

    def signature(self, text: str) -> np.ndarray:
        shingles = _hash64(ngrams(text, self.shingle)) % _MERSENNE
        if shingles.size == 0:
            return np.zeros(self.a.size, dtype=np.uint64)
        # (a*x + b) mod p without overflow: split x into 32-bit halves
        hi, lo = shingles >> np.uint64(32), shingles & np.uint64(0xFFFFFFFF)
        a = self.a[:, None]
        mixed = (a * hi % _MERSENNE) * np.uint64(1 << 32) % _MERSENNE + a * lo % _MERSENNE + self.b[:, None]
        return (mixed % _MERSENNE).min(axis=1)

    def bands(self, signature: np.ndarray) -> list[bytes]:
        return [
            signature[i : i + self.rows].tobytes() + bytes([i]) for i in range(0, signature.size, self.rows)
        ]


def near_duplicates(
    texts: list[str], threshold: float = 0.8, hasher: MinHasher | None = None
) -> dict[int, int]:
    """{index: the earlier row it near-duplicates} for every later member of a near-duplicate pair."""
    hasher = hasher or MinHasher()
    signatures = [hasher.signature(t) for t in texts]
    buckets: dict[bytes, list[int]] = {}
    duplicate_of: dict[int, int] = {}
    for i, sig in enumerate(signatures):
        candidates: set[int] = set()
        for band in hasher.bands(sig):
            candidates.update(buckets.setdefault(band, []))
        for j in sorted(candidates):
            if j not in duplicate_of and float(np.mean(signatures[j] == sig)) >= threshold:
                duplicate_of[i] = j
                break
        if i not in duplicate_of:
            for band in hasher.bands(sig):
                buckets[band].append(i)
    return duplicate_of


def spans(text: str, n: int) -> set[str]:
    """The n-grams decontamination compares: n tokens, or 2n where most tokens are CJK characters (a Chinese
    word is about two characters, and 13 characters of templated word problems are shared by unrelated
    problems: `分别从A、B两地同时相向而行`)."""
    words = tokens(text)
    if sum(1 for w in words if _HAN_CHAR.fullmatch(w)) * 2 > len(words):
        n *= 2
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


class Contamination:
    """N-grams (`spans`) of evaluation prompts, each remembering the prompt and evaluation set it came from.

    A text is contaminated when at least `min_overlap` of its n-grams occur in the evaluation prompts, or it
    holds at least that fraction of one evaluation prompt's n-grams (a short problem copied into a longer
    one). A single shared n-gram is not enough: boilerplate such as `where m and n are relatively prime
    positive integers. Find m+n` is in hundreds of unrelated problems."""

    def __init__(self, eval_texts: Iterable[str] = (), n: int = 13, min_overlap: float = 0.2) -> None:
        self.n, self.min_overlap = n, min_overlap
        self.owner: dict[str, int] = {}  # n-gram -> index of the first evaluation prompt that has it
        self.labels: list[str] = []  # per evaluation prompt: its set
        self.sizes: list[int] = []  # per evaluation prompt: how many n-grams it has
        self.add(eval_texts, "eval")

    def add(self, texts: Iterable[str], label: str) -> int:
        """Adds one evaluation set's prompts; returns how many it had."""
        count = 0
        for text in texts:
            grams = spans(text, self.n)
            for gram in grams:
                self.owner.setdefault(gram, len(self.sizes))
            self.labels.append(label)
            self.sizes.append(len(grams))
            count += 1
        return count

    def which(self, text: str) -> str | None:
        """The evaluation set `text` overlaps (the one whose prompt shares most n-grams), or None."""
        grams = spans(text, self.n)
        shared = Counter(self.owner[g] for g in grams if g in self.owner)
        if not shared:
            return None
        best, count = shared.most_common(1)[0]
        of_text = sum(shared.values()) / len(grams)
        of_eval = max(c / self.sizes[i] for i, c in shared.items())
        return self.labels[best] if max(of_text, of_eval) >= self.min_overlap else None

    def hit(self, text: str) -> bool:
        return self.which(text) is not None
