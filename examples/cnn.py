"""A small CNN: two 3x3 convolutions with ReLU and pooling, then a linear classifier.

Input: ``x`` of shape (2, 3, 16, 16) float32 (NCHW). Output: logits of shape (2, 10).
"""

import torch
from torch import nn

torch.manual_seed(0)


class SmallCNN(nn.Module):
    """Conv(3->8) - ReLU - MaxPool(2) - Conv(8->16) - ReLU - AdaptiveAvgPool(1) - Linear(16->10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float32 -> (N, 10) float32."""
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


model = SmallCNN().eval()
example_inputs = (torch.randn(2, 3, 16, 16),)
