"""API-key authentication, framework-free: the valid keys, the open paths, and the one check
that the REST middleware (`service.auth`) and the gRPC interceptor (`service.grpc.auth`) call.

A key arrives as `authorization: Bearer <key>` or as `x-api-key: <key>`. No key configured
means authentication is off. Keys are kept and compared as SHA-256 digests with
`hmac.compare_digest`, against every configured key without stopping at a match, so that the
time a check takes tells neither which key matched nor how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from service.core.config import ServingConfig
from service.core.errors import Unauthenticated

BEARER = "bearer "


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def read_keys_file(path: str | Path) -> list[str]:
    """One key a line; blank lines and lines starting with '#' are skipped."""
    lines = Path(path).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    """The key a request carries, from `authorization: Bearer <key>` or `x-api-key`."""
    if authorization and authorization[:len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER):].strip() or None
    if api_key:
        return api_key.strip() or None
    return None


@dataclass(frozen=True)
class ApiKeys:
    digests: tuple[bytes, ...] = ()
    open_paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, keys: list[str] | tuple[str, ...], open_paths: tuple[str, ...] = ()) -> ApiKeys:
        if any(not isinstance(key, str) or not key.strip() for key in keys):
            raise ValueError("API keys must be non-empty strings")
        return cls(tuple(_digest(key.strip()) for key in keys), tuple(open_paths))

    @classmethod
    def from_config(cls, config: ServingConfig) -> ApiKeys:
        keys = list(config.api_keys)
        if config.api_keys_file:
            keys += read_keys_file(config.api_keys_file)
            if not keys:  # a file that was meant to turn authentication on must not turn it off
                raise ValueError(f"api_keys_file {config.api_keys_file} holds no key")
        return cls.of(keys, config.open_paths)

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def is_open(self, path: str) -> bool:
        return any(path.startswith(p[:-1]) if p.endswith("*") else path == p
                   for p in self.open_paths)

    def check(self, authorization: str | None, api_key: str | None) -> None:
        """Returns when authentication is off or the request carries a valid key; raises
        `Unauthenticated` otherwise."""
        if not self.enabled:
            return
        key = presented_key(authorization, api_key)
        if key is None:
            raise Unauthenticated("missing API key: send `authorization: Bearer <key>` "
                                  "or `x-api-key: <key>`")
        digest = _digest(key)
        matched = False
        for known in self.digests:
            matched |= hmac.compare_digest(known, digest)
        if not matched:
            raise Unauthenticated("invalid API key")
