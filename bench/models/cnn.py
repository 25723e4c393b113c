"""A small convolutional network for 3x32x32 (CIFAR) or 1x8x8 (digits) images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from bench.models.mlp import Normalize


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks with max-pooling, global average pooling, then a linear classifier.
    Same ``features`` / ``classifier`` split as :class:`bench.models.mlp.MLP`."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128),
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        mean_t = mean if isinstance(mean, (int, float)) else [[[m]] for m in mean]
        std_t = std if isinstance(std, (int, float)) else [[[s]] for s in std]
        layers: list[nn.Module] = [Normalize(mean_t, std_t)]
        prev = int(input_shape[0])
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            prev = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, num_classes)

    def hidden_layers(self) -> list[nn.Module]:
        return [m for m in self.features if isinstance(m, nn.ReLU)]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
