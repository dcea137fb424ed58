"""A real FTP server for tests (pyftpdlib on 127.0.0.1, passive mode), with fault injection.

Run as a process::

    python tests/servers/ftp_server.py --root DIR --user U --password P \
        [--drop-after BYTES --drop-count N] [--journal FILE]

It prints ``READY <port>`` on stdout once listening and serves until terminated. With
``--drop-after``, the data connection of the first upload of up to N distinct files is closed
abruptly after that many bytes (the partial file stays, as on a real server), so a client must
resume it. The journal records the commands that matter for resuming and verifying (``STOR``,
``APPE``, ``REST``, ``SIZE``, ``RETR``), dropped transfers (``DROP``) and completed uploads
(``RECEIVED``).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.log import logger
from pyftpdlib.servers import FTPServer

_journal_lock = threading.Lock()
JOURNAL: Path | None = None


def journal(line: str) -> None:
    if JOURNAL is None:
        return
    with _journal_lock, open(JOURNAL, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


class DroppingDTPHandler(DTPHandler):
    """Closes the data connection of a file's first upload after ``drop_after`` bytes."""

    drop_after = 0
    drops_left = 0
    dropped: set[str] = set()

    def handle_read(self) -> None:
        super().handle_read()
        cls = type(self)
        if self._closed or not self.receive or cls.drops_left <= 0:
            return
        name = getattr(self.file_obj, "name", "")
        if name in cls.dropped or self.tot_bytes_received < cls.drop_after:
            return
        cls.dropped.add(name)
        cls.drops_left -= 1
        journal(f"DROP {name} {self.tot_bytes_received}")
        self.file_obj.flush()
        # What a real server answers when the data connection breaks mid-transfer.
        self._resp = ("426 Connection closed; transfer aborted.", logger.warning)
        self.close()

    handle_read_event = handle_read  # the base class binds its own handle_read under this name


class JournalingHandler(FTPHandler):
    """Records the commands a resuming, verifying client uses."""

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        journal(f"{'APPE' if 'a' in mode else 'STOR'} {file} rest={self._restart_position}")
        return super().ftp_STOR(file, mode)

    def ftp_RETR(self, file: str) -> None:
        journal(f"RETR {file}")
        super().ftp_RETR(file)

    def ftp_REST(self, line: str) -> None:
        journal(f"REST {line}")
        super().ftp_REST(line)

    def ftp_SIZE(self, path: str) -> None:
        journal(f"SIZE {path}")
        super().ftp_SIZE(path)

    def on_file_received(self, file: str) -> None:
        journal(f"RECEIVED {file}")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def main(argv: list[str] | None = None) -> int:
    global JOURNAL
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder served as the user's home")
    ap.add_argument("--user", default="bsftp")
    ap.add_argument("--password", default="bsftp1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--drop-after", type=int, default=0, help="bytes before a drop (0: never)")
    ap.add_argument("--drop-count", type=int, default=0, help="how many uploads to drop")
    ap.add_argument("--journal", help="file to append the journal to")
    args = ap.parse_args(argv)
    JOURNAL = Path(args.journal) if args.journal else None

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler = JournalingHandler
    handler.authorizer = authorizer
    handler.passive_ports = _free_ports(20)
    handler.banner = "imagedepot test FTP server ready"
    if args.drop_after and args.drop_count:
        DroppingDTPHandler.drop_after = args.drop_after
        DroppingDTPHandler.drops_left = args.drop_count
        handler.dtp_handler = DroppingDTPHandler
    server = FTPServer(("127.0.0.1", args.port), handler)
    server.max_cons = 64
    port = server.socket.getsockname()[1]
    print(f"READY {port}", flush=True)
    try:
        server.serve_forever(handle_exit=True)
    finally:
        server.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
