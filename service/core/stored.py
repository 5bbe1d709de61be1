"""What the model repository holds, re-read at most every few seconds.

Reading the store parses every stored model's files (BentoML's `model.yaml`, our
`convzoo.json`): too slow for every listing, every selection table and every error that names
the served models, so `StoreIndex` keeps the repository's entries for `ttl_s`.
"""

from __future__ import annotations

import time

from model_store.repository import MISSING, ModelRepository, StoreEntry

STORE_STATUS_TTL_S = 5.0


class StoreIndex:
    def __init__(self, repository: ModelRepository, ttl_s: float = STORE_STATUS_TTL_S) -> None:
        self.repository = repository
        self.ttl_s = ttl_s
        self._cache: tuple[float, dict[str, StoreEntry]] | None = None

    def entries(self) -> dict[str, StoreEntry]:
        """Every stored registry model's weights status (or broken, and why)."""
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > self.ttl_s:
            self._cache = (now, self.repository.entries())
        return self._cache[1]

    def statuses(self) -> dict[str, str]:
        return {name: entry.status for name, entry in self.entries().items()}

    def status(self, name: str) -> str:
        """One model's weights status: pretrained, random-init, broken or missing."""
        entry = self.entries().get(name)
        return entry.status if entry else MISSING
