"""Dataset builder, stage 4: exact and near-duplicate removal, and decontamination against evaluation sets.

- exact: the hash of the normalised prompt (lower case, punctuation and runs of space removed);
- near: MinHash over word 5-gram shingles with LSH banding, confirmed by the estimated Jaccard similarity
  (>= `threshold`); of a duplicate pair the row that comes later in the input is dropped;
- decontamination: a row sharing any word 13-gram with an evaluation prompt is dropped (a prompt shorter than
  13 words is compared whole).
All three are deterministic and keep the first occurrence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")
_MERSENNE = np.uint64((1 << 61) - 1)


def normalise(text: str) -> str:
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def text_hash(text: str) -> str:
    return hashlib.sha1(normalise(text).encode()).hexdigest()


def ngrams(text: str, n: int) -> set[str]:
    words = normalise(text).split()
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


class Contamination:
    """Word 13-grams of the evaluation prompts; `hit(text)` says whether a prompt overlaps any of them."""

    def __init__(self, eval_texts: Iterable[str], n: int = 13) -> None:
        self.n = n
        self.grams: set[str] = set()
        for text in eval_texts:
            self.grams |= ngrams(text, n)

    def hit(self, text: str) -> bool:
        return not self.grams.isdisjoint(ngrams(text, self.n))
