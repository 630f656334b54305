"""An adaptive order-0 predictor: per-stream byte counts. A baseline and a fast engine-test model."""
from __future__ import annotations

import numpy as np

from . import schema
from .base import PredictorIdentity, Registered


class Order0(Registered):
    """Weights = counts * 2 + 1 per stream; counts halve when a stream's total passes `limit`."""
    NAMES = ("order0",)
    SETTINGS = schema.Schema({"limit": schema.integer(1, 1 << 24, 1 << 16)})

    def __init__(self, limit: int = 1 << 16):
        cfg = self.check_settings("order0", {"limit": limit})
        self.limit = cfg["limit"]
        self.identity = PredictorIdentity(name="order0", settings=cfg)

    def start(self, n_streams: int) -> np.ndarray:
        self.counts = np.zeros((n_streams, 256), dtype=np.int64)
        return self.counts * 2 + 1

    def step(self, symbols: np.ndarray) -> np.ndarray:
        a = len(symbols)
        c = self.counts[:a]
        c[np.arange(a), symbols] += 1
        over = c.sum(axis=1) > self.limit
        if over.any():
            c[over] >>= 1
        return c * 2 + 1
