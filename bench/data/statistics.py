"""Input statistics travel with the data.

A model that standardises its inputs itself (``(x - mean) / std`` inside the network, so that attacks work in the
data's own [0, 1] units) takes its mean and std from the datamodule, never from a task config: a data config may
declare them (``input_mean`` / ``input_std``), otherwise they are computed on the training split (one value per
channel for images, N x C x H x W; one value over all features otherwise). Likewise a dataset proposes the l_inf
attack radius of its own scale (``eps_scale`` in its data config); a task that attacks it uses that radius unless
``attack.eps`` is set, and refuses to run on data that declare none.
"""

from __future__ import annotations

from typing import Any

import torch


def input_statistics(dm: Any) -> tuple[float | list[float], float | list[float]]:
    """(mean, std) of the datamodule's inputs: its declared ``input_mean`` / ``input_std`` when not ``None``,
    else computed on its training split (population std; per channel for 4-d image batches)."""
    mean, std = getattr(dm, "input_mean", None), getattr(dm, "input_std", None)
    if mean is not None and std is not None:
        return _plain(mean), _plain(std)
    x = dm.split("train")["x"].to(torch.float64)
    dims = [0, 2, 3] if x.ndim == 4 else list(range(x.ndim))
    m, s = x.mean(dim=dims), x.std(dim=dims, unbiased=False).clamp(min=1e-8)
    computed_mean = m.tolist() if m.ndim else float(m)
    computed_std = s.tolist() if s.ndim else float(s)
    return _plain(mean) if mean is not None else computed_mean, _plain(std) if std is not None else computed_std


def _plain(v: Any) -> float | list[float]:
    return [float(a) for a in v] if isinstance(v, (list, tuple)) or hasattr(v, "__len__") else float(v)
