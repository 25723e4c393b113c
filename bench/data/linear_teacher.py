"""Binary labels from a linear teacher: x ~ N(0, I_d) (or sparse ternary inputs), y = 1[<w*, x> > 0].

The training pool holds max(m) examples; with a list of train sizes m, the first m examples of the pool form each
training set (nested sets, as in a learning curve). Points with <w*, x> = 0 (possible with sparse inputs) are
redrawn, so every label is defined. ``label_noise`` flips training labels only; the test set stays clean.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from bench.data.base import TensorDataModule
from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator

TEACHERS = ("dense", "sparse")
INPUTS = ("gaussian", "sparse")


def as_list(value) -> list:
    """A scalar or a sequence (also an OmegaConf ListConfig) as a list."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


class LinearTeacherDataModule(TensorDataModule):
    """Args:
    d: input dimension.
    m: train size, or a list of train sizes (nested subsets of one pool of max(m) examples).
    n_test: test examples (clean labels).
    teacher: ``dense`` (w* ~ N(0, I_d)) or ``sparse`` (``teacher_sparsity`` random coordinates ~ N(0, 1), rest 0).
    inputs: ``gaussian`` (N(0, I_d)) or ``sparse`` (entries in {-1, 0, 1}, nonzero with prob. ``input_density``).
    label_noise: probability of flipping a training label.
    """

    num_classes = 2

    def __init__(
        self,
        d: int = 256,
        m: int | Sequence[int] = 64,
        n_test: int = 20000,
        teacher: str = "dense",
        teacher_sparsity: int = 8,
        inputs: str = "gaussian",
        input_density: float = 0.1,
        label_noise: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.d, self.n_test = int(d), int(n_test)
        self.train_sizes = [int(v) for v in as_list(m)]
        if self.d < 1:
            raise BenchError(f"data.d must be >= 1, got {d}")
        if not self.train_sizes or min(self.train_sizes) < 1:
            raise BenchError(f"data.m (train size) must be >= 1, got {list(as_list(m))}")
        if self.n_test < 1:
            raise BenchError(f"data.n_test must be >= 1, got {n_test}")
        if teacher not in TEACHERS:
            raise BenchError(f"unknown data.teacher {teacher!r}; known: {', '.join(TEACHERS)}")
        if teacher == "sparse" and not 1 <= int(teacher_sparsity) <= self.d:
            raise BenchError(f"data.teacher_sparsity={teacher_sparsity} must be between 1 and d={self.d} "
                             "(the number of nonzero teacher coordinates)")
        if inputs not in INPUTS:
            raise BenchError(f"unknown data.inputs {inputs!r}; known: {', '.join(INPUTS)}")
        if inputs == "sparse" and not 0 < float(input_density) <= 1:
            raise BenchError(f"data.input_density must be in (0, 1], got {input_density}")
        if not 0 <= float(label_noise) <= 0.5:
            raise BenchError(f"data.label_noise must be in [0, 0.5], got {label_noise}")
        self.teacher_kind, self.teacher_sparsity = teacher, int(teacher_sparsity)
        self.inputs, self.input_density, self.label_noise = inputs, float(input_density), float(label_noise)
        self.input_shape = (self.d,)
        self.teacher: Tensor | None = None

    def _generator(self, stream: int) -> torch.Generator:
        # separate streams: the training pool does not change with n_test, nor the teacher with either
        return seeded_generator(int(self.seed) * 7919 + stream, "linear_teacher", stream)

    def _draw_teacher(self) -> Tensor:
        g = self._generator(0)
        w = torch.randn(self.d, generator=g)
        if self.teacher_kind == "sparse":
            keep = torch.randperm(self.d, generator=g)[: self.teacher_sparsity]
            w = torch.zeros(self.d).index_copy_(0, keep, w[keep])
        return w

    def _draw_inputs(self, n: int, g: torch.Generator) -> Tensor:
        if self.inputs == "gaussian":
            return torch.randn(n, self.d, generator=g)
        nonzero = torch.rand(n, self.d, generator=g) < self.input_density
        signs = torch.randint(0, 2, (n, self.d), generator=g).float() * 2 - 1
        return signs * nonzero

    def _draw_labelled(self, n: int, g: torch.Generator, w: Tensor) -> tuple[Tensor, Tensor]:
        x = self._draw_inputs(n, g)
        for _ in range(1000):
            tie = (x @ w) == 0
            if not tie.any():
                break
            x[tie] = self._draw_inputs(int(tie.sum()), g)
        else:
            raise BenchError("could not draw inputs with <w*, x> != 0; raise data.input_density or data.teacher_sparsity")
        return x, (x @ w > 0).long()

    def build(self):
        w = self._draw_teacher()
        self.teacher = w
        x, y = self._draw_labelled(max(self.train_sizes), self._generator(1), w)
        if self.label_noise > 0:
            flip = torch.rand(len(y), generator=self._generator(3)) < self.label_noise
            y = torch.where(flip, 1 - y, y)
        xt, yt = self._draw_labelled(self.n_test, self._generator(2), w)
        return {"train": {"x": x, "y": y}, "test": {"x": xt, "y": yt}}
