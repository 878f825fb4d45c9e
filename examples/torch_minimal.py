"""A minimal torch training loop over a fer3d shard, with plain h5py (no fer3d code).

Usage: python examples/torch_minimal.py SHARD.h5
Texture (3 channels) and depth (1 channel, scaled to [0, 1] per sample) are stacked into a
4-channel image; a tiny CNN learns the six expressions for two epochs. The file is opened
lazily in each DataLoader worker: h5py handles must not cross a fork.
"""

import sys

import h5py
import numpy as np
import torch
from read_shard_h5py import open_shard_h5py  # this folder: refuses a virtual shard missing parts
from torch import nn
from torch.utils.data import DataLoader, Dataset


class ShardDataset(Dataset):
    """Samples of the six basic expressions (codes 0..5); neutral (6) is left out."""

    def __init__(self, path: str):
        self.path = path
        self.file = None
        with open_shard_h5py(path) as f:
            codes = f["index/expression"][:]
        self.rows = np.flatnonzero(codes < 6)
        self.labels = codes[self.rows].astype(np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        i = int(self.rows[k])
        texture = torch.from_numpy(self.file["texture"][i]).permute(2, 0, 1).float() / 255.0
        depth = self.file["depth"][i]
        depth = (depth - depth.min()) / max(float(np.ptp(depth)), 1e-6)
        x = torch.cat([texture, torch.from_numpy(depth).float()[None]], dim=0)  # (4, S, S)
        return x, int(self.labels[k])


def tiny_cnn(n_classes: int = 6) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(4, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, n_classes))


def main(path: str, epochs: int = 2) -> None:
    torch.manual_seed(0)
    data = ShardDataset(path)
    loader = DataLoader(data, batch_size=8, shuffle=True, num_workers=0)
    model = tiny_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        total, correct, loss_sum = 0, 0, 0.0
        for x, y in loader:
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
        print(f"epoch {epoch + 1}: loss {loss_sum / total:.4f}, "
              f"train accuracy {correct / total:.3f} ({total} samples)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
