"""Content verification shared by the deposits: the download cap and a hashing sink.

A remote copy counts as verified only when its content is known to equal the package's: by a
digest the server lists (XNAT's MD5), or by reading the remote copy back and hashing it. A file
too large to read back (over ``download_verify_limit`` bytes) is never called verified on its size
alone: the deposit refuses it and says which setting to raise.
"""

from __future__ import annotations

import hashlib

#: Default ``download_verify_limit``: the largest file (bytes) whose remote copy is read back and
#: hashed when the server lists no digest for it (1 GiB). Files above it fail the deposit.
DOWNLOAD_VERIFY_LIMIT = 1 << 30


class HashSink:
    """A write-only stream that hashes what it receives (MD5 and SHA-256) and counts the bytes.

    Memory stays flat in the file size: pass ``sink.write`` as a download callback.
    """

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Hash a chunk; returns its length (the file protocol's ``write``)."""
        self.md5.update(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def over_limit_message(paths: list[str], limit: int, setting: str) -> str:
    """The refusal for files whose content cannot be verified within the download cap."""
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (
        f"{len(paths)} file(s) larger than the content-verification cap of {limit} bytes "
        f"({shown}): the server lists no checksum for them, so their content could only be "
        f"checked by reading them back; a size match alone is not accepted. Raise {setting} "
        "above the largest file to have them read back and hashed"
    )


__all__ = ["DOWNLOAD_VERIFY_LIMIT", "HashSink", "over_limit_message"]
