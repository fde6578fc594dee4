"""A small MLP: Linear-GELU-Linear-ReLU-Linear.

Input: ``x`` of shape (8, 64) float32. Output: logits of shape (8, 10).
"""

import torch
from torch import nn

torch.manual_seed(0)


class MLP(nn.Module):
    """Three linear layers, dims 64 -> 128 -> 128 -> 10, with GELU and ReLU between them."""

    def __init__(self, d_in: int = 64, d_hidden: int = 128, d_out: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.act1 = nn.GELU()
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, 64) float32 -> (batch, 10) float32."""
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


model = MLP().eval()
example_inputs = (torch.randn(8, 64),)
