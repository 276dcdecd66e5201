"""The MLPs the fine-tune benchmarks train (bench_finetune.py, bench_dist.py):
ReLU MLPs on the digits' 0-16 pixels, and 90% magnitude pruning of their
weight matrices."""
import torch


class MLP(torch.nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x):
        x = x / 16.0
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < n:
                x = torch.relu(x)
        return x


def prune90(m):
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("weight") and p.dim() == 2:
                k = int(0.9 * p.numel() + 0.5)
                p.view(-1)[p.abs().flatten().argsort()[:k]] = 0
