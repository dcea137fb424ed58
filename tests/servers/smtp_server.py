"""A tiny SMTP server for tests (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT).

Run as a process::

    python tests/servers/smtp_server.py --out DIR

It prints ``READY <port>`` once listening on 127.0.0.1 and writes each message it accepts to
``DIR/<n>.eml`` (envelope sender and recipients in ``X-Envelope-From`` / ``X-Envelope-To`` headers
prepended), so tests read what a notification really sent over SMTP.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import socketserver
import sys
import threading
from pathlib import Path

OUT: Path = Path()
COUNTER = itertools.count(1)
LOCK = threading.Lock()


class SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 localhost imagedepot test SMTP")
        sender: str | None = None
        rcpts: list[str] = []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                if verb == "EHLO":
                    self.wfile.write(b"250-localhost\r\n250-8BITMIME\r\n")
                self.reply("250 localhost")
            elif verb == "MAIL":
                sender = line.split(":", 1)[1].strip().strip("<>").split(">")[0]
                rcpts = []
                self.reply("250 OK")
            elif verb == "RCPT":
                if sender is None:
                    self.reply("503 need MAIL first")
                    continue
                rcpts.append(line.split(":", 1)[1].strip().strip("<>").split(">")[0])
                self.reply("250 OK")
            elif verb == "DATA":
                if not rcpts:
                    self.reply("503 need RCPT first")
                    continue
                self.reply("354 end data with <CR><LF>.<CR><LF>")
                lines = []
                while True:
                    d = self.rfile.readline(65536)
                    if not d or d in (b".\r\n", b".\n"):
                        break
                    lines.append(d[1:] if d.startswith(b"..") else d)
                with LOCK:
                    n = next(COUNTER)
                head = f"X-Envelope-From: {sender}\r\nX-Envelope-To: {', '.join(rcpts)}\r\n"
                (OUT / f"{n}.eml").write_bytes(head.encode() + b"".join(lines))
                sender, rcpts = None, []
                self.reply("250 OK queued")
            elif verb == "RSET":
                sender, rcpts = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the received messages")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    OUT = Path(args.out)
    OUT.mkdir(parents=True, exist_ok=True)
    with Server(("127.0.0.1", args.port), SMTPHandler) as server:
        print(f"READY {server.server_address[1]}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
