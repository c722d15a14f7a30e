"""Conditional replenishment: on a static camera most tiles do not change, so send only the tiles that changed
since they were last sent, plus a few of the longest-unsent ones (a cyclic refresh that heals lost tiles and makes
the robot converge). The robot keeps the unsent tiles from its previous frame (protocol "tiles sent")."""
from __future__ import annotations

import numpy as np

from .codec import tile_grid


class Replenisher:
    def __init__(self, tile: int, threshold: float = 4.0, refresh: int = 2):
        self.tile, self.threshold, self.refresh = tile, threshold, refresh
        self.ref: np.ndarray | None = None   # what the robot has (the source tiles as last sent)
        self.age: np.ndarray | None = None   # frames since each tile was last sent

    def select(self, img: np.ndarray) -> list[int]:
        """Tile indexes to send for ``img``, most changed first (all of them for a new size)."""
        grid = tile_grid(img.shape[0], img.shape[1], self.tile)
        if self.ref is None or self.age is None or self.ref.shape != img.shape:
            self.ref, self.age = None, np.zeros(len(grid), np.int64)
            return list(range(len(grid)))
        diff = np.array([np.abs(img[y:y + h, x:x + w].astype(np.int16) - self.ref[y:y + h, x:x + w]).mean()
                         for x, y, w, h in grid])
        changed = [int(i) for i in np.argsort(-diff) if diff[i] > self.threshold]
        stale = [int(i) for i in np.argsort(-self.age, kind="stable") if i not in set(changed)][:self.refresh]
        return changed + stale or [int(np.argmax(self.age))]

    def sent(self, img: np.ndarray, indices) -> None:
        """Record that ``indices`` of ``img`` went out."""
        grid = tile_grid(img.shape[0], img.shape[1], self.tile)
        if self.ref is None or self.age is None or self.ref.shape != img.shape:  # nothing of this size there yet
            self.ref, self.age = np.zeros_like(img), np.zeros(len(grid), np.int64)
        assert self.ref is not None and self.age is not None
        self.age += 1
        for i in indices:
            x, y, w, h = grid[i]
            self.ref[y:y + h, x:x + w] = img[y:y + h, x:x + w]
            self.age[i] = 0
