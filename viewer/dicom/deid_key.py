"""The project secret behind de-identification: pseudonyms, UIDs and date shifts are keyed on it,
so the same key gives the same pseudonyms in every run and nobody without it can reverse them."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from viewer.core.errors import RadSightError
from viewer.core.paths import user_data_dir

KEY_FILE_NAME = "deid.key"
MIN_SECRET_CHARS = 32


class DeidKey:
    """A secret of at least 32 characters; never printed (its repr hides it)."""

    def __init__(self, secret: bytes):
        if len(secret) < MIN_SECRET_CHARS:
            raise RadSightError(f"de-identification key has {len(secret)} characters; it needs at least "
                                f"{MIN_SECRET_CHARS} (a new key file made by `radsight deid` has 64)")
        self._secret = secret

    def __repr__(self) -> str:
        return "DeidKey(<secret>)"

    @classmethod
    def from_file(cls, path: Path | str) -> DeidKey:
        path = Path(path)
        if not path.is_file():
            raise RadSightError(f"{path}: no such key file (leave out --key-file to use the one in the user "
                                f"data folder, created on first use)")
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise RadSightError(f"{path}: cannot read the key file: {exc.strerror}") from None
        try:
            return cls(secret)
        except RadSightError as exc:
            raise RadSightError(f"{path}: {exc}") from None

    @classmethod
    def default(cls) -> DeidKey:
        """The key file in the user data folder, created (readable by the owner only) on first use."""
        path = user_data_dir() / KEY_FILE_NAME
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use that one
                return cls.from_file(path)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        return cls.from_file(path)

    def digest(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of a value for one purpose, so pseudonyms for different uses never coincide."""
        return hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
