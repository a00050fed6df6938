"""Request ids that every router runner recognises without asking the database.

A request id is 12 hex digits of the time in milliseconds, 12 random hex digits, and an
8-hex-digit tag, HMAC-SHA256 of the first 24 under
a key all runners share (``ABPLATFORM_REQUEST_ID_KEY``, by default derived from the
database URL, which every runner of one deployment has). Feedback that reaches a runner
other than the one that served the request is accepted when the tag is right, and its
unit is taken from the request's row when it is written; a mistyped or invented id is
refused at once (404). The tag is 32 bits: it tells typos from ids, it is no secret.

Time first: ids of one moment sort together, so the log's primary-key index takes new
rows at its right edge instead of at random pages (issue 10's ingest profile); 48 random
bits per millisecond keep ids of many runners apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

TAG_HEX = 8
BODY_BYTES = 12
"""Length of the id's body in bytes (24 hex digits): 6 of time, 6 random."""


class RequestIds:
    """Makes and checks request ids (32 lowercase hex digits)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secret(cls, secret: str) -> RequestIds:
        """Ids keyed by ``secret`` (any text shared by every runner)."""
        return cls(hashlib.sha256(b"abplatform-request-id\0" + secret.encode()).digest())

    def _tag(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:TAG_HEX]

    def new(self) -> str:
        """A fresh id."""
        body = f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(6)}"
        return body + self._tag(body)

    def is_ours(self, request_id: str) -> bool:
        """Whether ``request_id`` was made by a runner with the same key."""
        if len(request_id) != 2 * BODY_BYTES + TAG_HEX:
            return False
        body, tag = request_id[: 2 * BODY_BYTES], request_id[2 * BODY_BYTES :]
        return hmac.compare_digest(self._tag(body), tag)


__all__ = ["RequestIds"]
