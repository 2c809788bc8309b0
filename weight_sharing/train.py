"""Deterministic training of the built-in demo network (LeNet-5 on the shipped MNIST digits)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from .models import LeNet5

log = logging.getLogger(__name__)


def train_lenet5(x: np.ndarray, y: np.ndarray, mean, std, epochs: int, batch_size: int,
                 lr: float, seed: int, dropout: float = 0.0, num_classes: int = 10) -> LeNet5:
    """AdamW + cosine schedule on cross-entropy, seeded shuffles and dropout, one CPU thread.

    The same seed gives the same weights. Dropout (training only) makes the
    fully connected layers tolerate coarse weight sharing, as in a deployable model.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thread count changes float summation order; fix it
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = LeNet5(num_classes=num_classes, in_chans=x.shape[1], dropout=dropout)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        xt = (torch.from_numpy(x).float() / 255.0 - float(np.mean(mean))) / float(np.mean(std))
        yt = torch.from_numpy(y).long()
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(yt), generator=gen)
            total = 0.0
            for i in range(0, len(yt), batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss) * len(idx)
            sched.step()
            log.info("epoch %d/%d: train loss %.4f", epoch + 1, epochs, total / len(yt))
        return model.eval()
    finally:
        torch.set_num_threads(threads)
