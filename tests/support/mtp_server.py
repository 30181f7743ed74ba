"""A small Mail Transfer Protocol server (RFC 780, May 1981) for the identification tests.

There is no packaged MTP server anywhere any more, so the test writes one from the RFC's
command and reply definitions: the 220 greeting, MAIL (which takes the text at once: 354),
the multi-recipient commands MRSQ (scheme query and selection: R recipients first, T text
first; 215 names the preferred scheme) and MRCP, RSET, HELP, NOOP, QUIT. No HELO/EHLO:
those came with SMTP. Mail is accepted and dropped.

    python3 mtp_server.py PORT [PORT...]      prints 'ready' when listening
"""

from __future__ import annotations

import asyncio
import sys

HOST = "MTP.PORTATLAS.TEST"
COMMANDS = ("MAIL", "MSND", "MSOM", "MSAM", "MRSQ", "MRCP", "RSET", "HELP", "NOOP", "QUIT")


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    scheme = None
    recipients: list[str] = []

    def reply(text: str) -> None:
        writer.write(text.encode() + b"\r\n")

    reply(f"220 {HOST} Mail Transfer Protocol service ready")
    try:
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                break
            words = line.decode("ascii", "replace").strip().split(" ", 1)
            verb, arg = words[0].upper(), (words[1] if len(words) > 1 else "")
            if verb == "MRSQ":
                if arg == "":
                    scheme = None
                    reply("200 OK, no scheme selected")
                elif arg == "?":
                    reply("215 T Text-first scheme is preferred")
                elif arg.upper() in ("R", "T"):
                    scheme = arg.upper()
                    reply(f"200 OK, using scheme {scheme}")
                else:
                    reply("504 Scheme not implemented")
            elif verb == "MRCP":
                if scheme is None:
                    reply("503 Bad sequence of commands: no MRSQ scheme selected")
                else:
                    recipients.append(arg)
                    reply("200 OK")
            elif verb in ("MAIL", "MSND", "MSOM", "MSAM"):
                reply("354 Start mail input; end with <CRLF>.<CRLF>")
                while True:
                    text = await asyncio.wait_for(reader.readline(), 30)
                    if not text or text.rstrip(b"\r\n") == b".":
                        break
                reply("250 Requested mail action okay, completed")
                recipients.clear()
            elif verb == "RSET":
                scheme, recipients = None, []
                reply("250 OK")
            elif verb == "HELP":
                reply("214-The following commands are recognized:")
                reply("214-   " + " ".join(COMMANDS))
                reply("214 End of HELP info")
            elif verb == "NOOP":
                reply("250 OK")
            elif verb == "QUIT":
                reply(f"221 {HOST} Service closing transmission channel")
                break
            else:
                reply("500 Syntax error, command unrecognized")
            await writer.drain()
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(ports: list[int]) -> None:
    servers = [await asyncio.start_server(session, "0.0.0.0", p) for p in ports]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main([int(p) for p in sys.argv[1:]]))
