"""The keys of HMAC-signed tokens, by key id: the current one signs, the others verify.

Owns the key ring of a token family (return paths and our reference header,
``engine.return_path``; tracking links, ``tracking_edge.tokens``) and the
derivation of its keys from the engine secret: one key per purpose and key id,
HMAC-SHA256(secret, purpose + "/" + key id), so rotating a family's key id
never touches another family's. Key ids are 1 to 8 of a-z, 0-9 (``[bounce]``
and ``[tracking]`` ``token_key_id``, ``accepted_key_ids``). Pure.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from config.schema import KEY_ID


def derive_key(secret: bytes, key_id: str, purpose: str) -> bytes:
    """The key of ``key_id`` in the token family ``purpose``."""
    label = f"{purpose}/{key_id}".encode("ascii")
    return hmac.digest(secret, label, hashlib.sha256)


class TokenKeys:
    """The keys of one token family by key id, and which one signs new tokens."""

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        for key_id in keys:
            if not KEY_ID.fullmatch(key_id):
                raise ValueError(f"key id {key_id!r}: expected 1 to 8 of a-z, 0-9")
        if current_key_id not in keys:
            raise ValueError(f"no key for the current key id {current_key_id!r}")
        self._keys = dict(keys)
        self.current_id = current_key_id
        # Keyed once: a copy skips the key's setup (and the digest's lookup) on every MAC.
        self._keyed = {
            key_id: hmac.new(key, digestmod=hashlib.sha256) for key_id, key in keys.items()
        }

    @property
    def current(self) -> bytes:
        """The key that signs new tokens."""
        return self._keys[self.current_id]

    def get(self, key_id: str) -> bytes | None:
        """The key of ``key_id``; None when it is not trusted."""
        return self._keys.get(key_id)

    def mac(self, key_id: str) -> hmac.HMAC | None:
        """A new HMAC-SHA256 under the key of ``key_id``; None when it is not trusted."""
        keyed = self._keyed.get(key_id)
        return keyed.copy() if keyed is not None else None

    def signing_mac(self) -> hmac.HMAC:
        """A new HMAC-SHA256 under the key that signs new tokens."""
        return self._keyed[self.current_id].copy()

    def __repr__(self) -> str:
        return f"TokenKeys(current={self.current_id!r}, key_ids={sorted(self._keys)!r})"
