"""sklearn's 8x8 digits (1797 images, bundled with scikit-learn: no download), scaled to [0, 1]."""

from __future__ import annotations

import torch

from bench.data.base import TensorDataModule, stratified_split


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0  # pixel values are 0..16
    y = torch.tensor(d.target, dtype=torch.long)
    return x, y


class DigitsDataModule(TensorDataModule):
    """Digits as flat 64-d vectors (``flatten=True``) or 1x8x8 images, stratified train/val/test split.

    Args:
        classes: keep only these digit classes (relabelled 0..k-1 in the given order); ``None`` = all ten.
        test_fraction, val_fraction: fractions of each class held out.
        input_mean, input_std: the inputs' statistics for models that standardise inside (``None``: computed on
            the training split, see :mod:`bench.data.statistics`).
        eps_scale: the l_inf attack radius this dataset proposes to tasks that attack it (``attack.eps`` wins).
    """

    def __init__(
        self,
        classes: list[int] | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.0,
        flatten: bool = True,
        input_mean: float | None = None,
        input_std: float | None = None,
        eps_scale: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.input_mean, self.input_std, self.eps_scale = input_mean, input_std, eps_scale
        self.classes = list(classes) if classes is not None else list(range(10))
        self.test_fraction, self.val_fraction, self.flatten = test_fraction, val_fraction, flatten
        self.num_classes = len(self.classes)

    def build(self):
        x, y = load_digits_tensors()
        keep = torch.isin(y, torch.tensor(self.classes))
        x, y = x[keep], y[keep]
        remap = {c: i for i, c in enumerate(self.classes)}
        y = torch.tensor([remap[int(v)] for v in y], dtype=torch.long)
        if not self.flatten:
            x = x.view(-1, 1, 8, 8)
        train_f = 1.0 - self.test_fraction - self.val_fraction
        tr, va, te = stratified_split(y, [train_f, self.val_fraction, self.test_fraction], self.seed)
        splits = {"train": {"x": x[tr], "y": y[tr]}, "test": {"x": x[te], "y": y[te]}}
        if len(va):
            splits["val"] = {"x": x[va], "y": y[va]}
        return splits
