"""The ConvNet of dataset distillation (Gidaris & Komodakis 2018, as used by DC / DSA / MTT): ``depth`` blocks of
3x3 conv -> instance norm -> ReLU -> 2x2 average pooling, then a linear classifier.

Instance norm (a GroupNorm with one group per channel, affine) keeps no running statistics, so the network is a
pure function of its parameters: the student unrolled through ``torch.func.functional_call`` during distillation
sees exactly what a trained network sees (MTT's default ``instancenorm`` for the same reason).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from bench.models.mlp import Normalize

MIN_FINAL_SIDE = 2  # the last block's instance norm then normalises over >= 4x4 values (2x2 is near-degenerate)


def max_depth(side: int) -> int:
    """The largest ``depth`` whose final feature map is at least ``MIN_FINAL_SIDE`` pixels wide on ``side``-pixel
    images (32 px: 4, 28 px: 3, 8 px: 2); every block halves the map."""
    d = 0
    while side // 2 ** (d + 1) >= MIN_FINAL_SIDE:
        d += 1
    return d


class ConvNet(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        width: int = 32,
        depth: int = 3,
        norm: str = "instance",
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        mean_t = mean if isinstance(mean, (int, float)) else [[[m]] for m in mean]
        std_t = std if isinstance(std, (int, float)) else [[[s]] for s in std]
        layers: list[nn.Module] = [Normalize(mean_t, std_t)]
        channels, side = int(input_shape[0]), int(input_shape[-1])
        for _ in range(int(depth)):
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            if norm == "instance":
                layers.append(nn.GroupNorm(width, width, affine=True))
            elif norm != "none":
                raise ValueError(
                    f"model.norm={norm!r}: use 'instance' or 'none' (batch norm keeps running "
                    f"statistics, which a functional student cannot carry)"
                )
            layers += [nn.ReLU(), nn.AvgPool2d(2)]
            channels, side = width, side // 2
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * side * side, num_classes)

    def hidden_layers(self) -> list[nn.Module]:
        return [m for m in self.features if isinstance(m, nn.ReLU)]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
