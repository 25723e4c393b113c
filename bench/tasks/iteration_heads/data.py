"""Generated iterative-problem sequences: copy, parity, polynomial iteration over F_p.

A problem is a recurrence s_t = F(s_{t-1}, x_t) over inputs x_1..x_L. A sequence reads

    [BoS_problem] x_1 .. x_L [EoI] s_1 .. s_L [EoS]      (chain of thought)
    [BoS_problem] x_1 .. x_L [EoI] s_L [EoS]             (no chain of thought)

padded with EoS to the length of the longest one (2 n_len + 3 tokens with CoT, n_len + 4 without). The model sees
``x = seq[:-1]`` and predicts ``y = seq[1:]``;
``mask`` marks the targets after EoI (the answer tokens and the closing EoS), the only ones in the loss and in
the accuracy. Data symbols are the tokens 0..n_symbols-1 (shared by every problem, so a model can move from one
problem to another); the special tokens (one BoS per problem, EoI, EoS) come after them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from bench.data.base import TensorDataModule
from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator

PROBLEMS = ("copy", "parity", "polynomial")
SPECIAL = ("bos_copy", "bos_parity", "bos_polynomial", "eoi", "eos")


def alphabet_size(problem: str, modulus: int, n_symbols: int) -> int:
    """How many of the data symbols a problem draws its inputs from."""
    return {"copy": n_symbols, "parity": 2, "polynomial": modulus}[problem]


def recurrence(problem: str, x: Tensor, modulus: int = 11) -> Tensor:
    """The states s_1..s_L of inputs ``x`` (N, L): copy s_t = x_t; parity s_t = s_{t-1} xor x_t (s_0 = 0);
    polynomial s_1 = x_1, s_t = (s_{t-1} x_t + 1) mod p."""
    if problem == "copy":
        return x.clone()
    if problem == "parity":
        return torch.cumsum(x, dim=1) % 2
    if problem == "polynomial":
        s = torch.empty_like(x)
        s[:, 0] = x[:, 0] % modulus
        for t in range(1, x.shape[1]):
            s[:, t] = (s[:, t - 1] * x[:, t] + 1) % modulus
        return s
    raise BenchError(f"unknown iteration_heads problem {problem!r}; known problems: {', '.join(PROBLEMS)}")


def resolve_tokens(n_symbols: int, special_tokens: Mapping[str, int] | None) -> dict[str, int]:
    """The special token ids: by default n_symbols, n_symbols + 1, ... in the order of ``SPECIAL``; a user
    mapping overrides some of them. Raises when two tokens share an id or one falls among the data symbols."""
    tokens = {name: n_symbols + i for i, name in enumerate(SPECIAL)}
    unknown = sorted(set(special_tokens or {}) - set(SPECIAL))
    if unknown:
        raise BenchError(f"unknown special token(s) {unknown} in data.special_tokens; known: {', '.join(SPECIAL)}")
    tokens.update({k: int(v) for k, v in (special_tokens or {}).items()})
    for name, tok in tokens.items():
        if 0 <= tok < n_symbols:
            raise BenchError(
                f"special token {name}={tok} collides with the data symbols 0..{n_symbols - 1}; "
                f"give it an id >= {n_symbols} in data.special_tokens"
            )
        if tok < 0:
            raise BenchError(f"special token {name}={tok} is negative; token ids must be >= 0")
    by_id: dict[int, list[str]] = {}
    for name, tok in tokens.items():
        by_id.setdefault(tok, []).append(name)
    clashes = {tok: names for tok, names in by_id.items() if len(names) > 1}
    if clashes:
        desc = "; ".join(f"{' and '.join(n)} are all {t}" for t, n in clashes.items())
        raise BenchError(
            f"vocabulary collision between special tokens ({desc}); give each a distinct id in data.special_tokens"
        )
    return tokens


def sequence_length(n_len: int, cot: bool) -> int:
    """Tokens in a padded sequence: BoS, n_len inputs, EoI, the answer (n_len states or one), EoS."""
    return 2 * n_len + 3 if cot else n_len + 4


def encode(problem: str, x: Tensor, s: Tensor, cot: bool, n_len: int, tokens: Mapping[str, int]) -> dict[str, Tensor]:
    """Sequences of one length L = x.shape[1] as model inputs, targets and loss mask (see the module docstring).

    Returns ``x``, ``y`` and ``mask`` (bool), each (N, sequence_length(n_len, cot) - 1), and ``length`` (N,)."""
    n, length = x.shape
    total = sequence_length(n_len, cot)
    eos = tokens["eos"]
    seq = torch.full((n, total), eos, dtype=torch.long)
    seq[:, 0] = tokens[f"bos_{problem}"]
    seq[:, 1 : length + 1] = x
    seq[:, length + 1] = tokens["eoi"]
    answer = s if cot else s[:, -1:]
    seq[:, length + 2 : length + 2 + answer.shape[1]] = answer
    # targets y_j = seq_{j+1}; post-EoI targets are seq positions length+2 .. length+2+len(answer) (closing EoS)
    mask = torch.zeros(n, total - 1, dtype=torch.bool)
    mask[:, length + 1 : length + 2 + answer.shape[1]] = True
    return {"x": seq[:, :-1], "y": seq[:, 1:], "mask": mask, "length": torch.full((n,), length, dtype=torch.long)}


def draw_inputs(size: int, length: int, n: int, generator: torch.Generator) -> Tensor:
    """``n`` distinct input sequences of ``length`` symbols from ``range(size)`` (all of them, shuffled, when
    there are at most ``n``), so that a train / test split never shares a sequence."""
    count = size**length
    if count <= n:
        codes = torch.randperm(count, generator=generator)
    else:
        # each sequence is its base-`size` code; draw codes, keep the first n distinct ones in draw order
        codes = torch.empty(0, dtype=torch.long)
        while len(codes) < n:
            drawn = torch.cat([codes, torch.randint(0, count, (2 * n,), generator=generator)])
            codes = drawn[_first_occurrences(drawn)][:n]
    weights = size ** torch.arange(length - 1, -1, -1, dtype=torch.long)
    return (codes.view(-1, 1) // weights) % size


def _first_occurrences(values: Tensor) -> Tensor:
    """Indices of the first occurrence of each distinct value, in their original order."""
    uniq, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((len(uniq),), len(values), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(values)), "amin")
    return torch.sort(first).values


class IterationDataModule(TensorDataModule):
    """Sequences of every length L = min_len..n_len, ``n_per_length`` distinct ones per length (fewer when the
    alphabet has fewer), split ``train_fraction`` / rest into train and test within each length: the two splits
    never share a sequence (stricter than sampling both from the same distribution, which at short lengths puts
    the test sequences in the training set).

    Length-balanced training mix (``train_rows_per_length``): each length's training pool of distinct sequences
    is laid out to the same number of rows, so every length carries the same share of the loss whatever its pool
    size (parity has only 2^L sequences of length L). Every pool sequence appears ``rows // pool`` times and the
    remaining ``rows % pool`` rows are drawn from the pool without replacement (seeded): a draw with replacement
    balanced so that no sequence of the pool is left out by chance. ``None`` keeps each pool once.

    Evaluation: ``test/acc`` averages acc_L over the lengths whose test split holds at least
    ``min_test_sequences`` distinct sequences (:attr:`eval_lengths`; parity with the default 8: L >= 4), since
    acc_L of a length with 1-4 test sequences is close to a coin flip; acc_L of every length is recorded.

    Args:
        problem: ``copy``, ``parity`` or ``polynomial``.
        cot: write the whole chain s_1..s_L after EoI (True) or only the answer s_L (False).
        n_len: the longest input length (the model's context must hold 2 n_len + 2 positions with CoT,
            n_len + 3 without).
        min_len: the shortest input length.
        n_per_length: sequences drawn per length before the split (TASKS.md: ~1024, 50/50).
        modulus: the prime p of polynomial iteration.
        n_symbols: data symbols 0..n_symbols-1 in the vocabulary; ``None`` = max(modulus, 2). Keep it the same
            across problems that one model moves between.
        special_tokens: ids of some of ``bos_copy, bos_parity, bos_polynomial, eoi, eos`` (default: after the
            data symbols).
        train_rows_per_length: rows per length in the training mix (``None``: each distinct sequence once).
        min_test_sequences: distinct test sequences a length needs to enter the ``test/acc`` average.

    Batches: ``x``, ``y``, ``mask``, ``length`` (and ``index``). ``num_classes`` is the vocabulary size.
    """

    def __init__(
        self,
        problem: str = "parity",
        cot: bool = True,
        n_len: int = 12,
        min_len: int = 1,
        n_per_length: int = 1024,
        train_fraction: float = 0.5,
        modulus: int = 11,
        n_symbols: int | None = None,
        special_tokens: Mapping[str, int] | None = None,
        train_rows_per_length: int | None = None,
        min_test_sequences: int = 8,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if train_rows_per_length is not None and int(train_rows_per_length) < 1:
            raise BenchError(f"data.train_rows_per_length must be >= 1 or null, got {train_rows_per_length}")
        if int(min_test_sequences) < 1:
            raise BenchError(f"data.min_test_sequences must be >= 1, got {min_test_sequences}")
        self.train_rows_per_length = None if train_rows_per_length is None else int(train_rows_per_length)
        self.min_test_sequences = int(min_test_sequences)
        if problem not in PROBLEMS:
            raise BenchError(
                f"unknown iteration_heads problem {problem!r}; set data.problem to one of {', '.join(PROBLEMS)}"
            )
        from sympy import isprime

        if not isprime(int(modulus)):
            raise BenchError(
                f"data.modulus={modulus} is not prime: polynomial iteration runs over the field F_p; "
                "use a prime such as 5, 7, 11 or 13"
            )
        if not 1 <= int(min_len) <= int(n_len):
            raise BenchError(f"need 1 <= data.min_len <= data.n_len, got min_len={min_len}, n_len={n_len}")
        if not 0.0 < float(train_fraction) < 1.0:
            raise BenchError(f"data.train_fraction must lie in (0, 1), got {train_fraction}")
        self.problem, self.cot = problem, bool(cot)
        self.n_len, self.min_len, self.n_per_length = int(n_len), int(min_len), int(n_per_length)
        self.train_fraction, self.modulus = float(train_fraction), int(modulus)
        self.n_symbols = int(n_symbols) if n_symbols is not None else max(self.modulus, 2)
        needed = alphabet_size(problem, self.modulus, self.n_symbols)
        if needed > self.n_symbols:
            raise BenchError(
                f"problem {problem} uses symbols 0..{needed - 1} but data.n_symbols={self.n_symbols}; "
                f"raise data.n_symbols to >= {needed}"
            )
        if needed**self.n_len >= 2**62:
            raise BenchError(
                f"{needed}**n_len with n_len={self.n_len} overflows the int64 sequence codes; lower data.n_len"
            )
        self.tokens = resolve_tokens(self.n_symbols, special_tokens)
        self.num_classes = max(self.tokens.values()) + 1
        self.seq_len = sequence_length(self.n_len, self.cot) - 1
        self.input_shape = (self.seq_len,)

    @property
    def eoi_token(self) -> int:
        return self.tokens["eoi"]

    def build(self) -> dict[str, dict[str, Tensor]]:
        g = seeded_generator(self.seed, "iteration_heads/sequences")
        mix = seeded_generator(self.seed + 7919, "iteration_heads/mix")  # the training mix: not the sequences drawn
        size = alphabet_size(self.problem, self.modulus, self.n_symbols)
        parts: dict[str, list[dict[str, Tensor]]] = {"train": [], "test": []}
        self.eval_lengths: list[int] = []
        for length in range(self.min_len, self.n_len + 1):
            x = draw_inputs(size, length, self.n_per_length, g)
            enc = encode(self.problem, x, recurrence(self.problem, x, self.modulus), self.cot, self.n_len, self.tokens)
            n_train = min(max(1, math.floor(self.train_fraction * len(x))), len(x) - 1) if len(x) > 1 else 1
            rows = torch.arange(n_train)
            if self.train_rows_per_length is not None:
                rows = balanced_rows(n_train, self.train_rows_per_length, mix)
            parts["train"].append({k: v[rows] for k, v in enc.items()})
            if len(x) > n_train:
                parts["test"].append({k: v[n_train:] for k, v in enc.items()})
            if len(x) - n_train >= self.min_test_sequences:
                self.eval_lengths.append(length)
        return {name: {k: torch.cat([p[k] for p in ps]) for k in ps[0]} for name, ps in parts.items()}


def balanced_rows(pool: int, rows: int, generator: torch.Generator) -> Tensor:
    """``rows`` indices into a pool of ``pool`` items: every item ``rows // pool`` times, the remaining
    ``rows % pool`` items drawn without replacement; shuffled."""
    idx = torch.cat([torch.arange(pool).repeat(rows // pool), torch.randperm(pool, generator=generator)[: rows % pool]])
    return idx[torch.randperm(len(idx), generator=generator)]
