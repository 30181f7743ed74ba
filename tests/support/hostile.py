"""Hostile and broken TCP servers for the identification tests, one per port, in one process.

Run inside a test namespace:  python3 hostile.py silent:7001 tarpit:7002 ...
Kinds:
  silent      accepts, reads and drops everything, never sends a byte
  tarpit      sends an SMTP-looking greeting one byte per second, forever
  stream      sends 64 KiB chunks without pause for as long as the client stays
  huge        sends a 300 KB banner line, then falls silent
  random      sends 200 bytes of (seeded) random binary, answers anything with more
  tls-reset   waits for the client's first bytes; answers a TLS ClientHello with the first
              bytes of a handshake record, then resets (RST) the connection; resets
              non-TLS clients at once
  closes      accepts and closes at once
Prints 'ready' when every port listens. Writes no files.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import sys

RANDOM = random.Random(57).randbytes(200)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(4096):
        pass


async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = b"220 tarpit.example ESMTP please wait patiently " * 100
    for i in range(len(greeting)):
        writer.write(greeting[i:i + 1])
        await writer.drain()
        await asyncio.sleep(1.0)


async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"A" * 65536
    while True:
        writer.write(chunk)
        await writer.drain()


async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"X" * 300_000 + b"\r\n")
    await writer.drain()
    await silent(reader, writer)


async def random_binary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(RANDOM)
    await writer.drain()
    while await reader.read(4096):
        writer.write(RANDOM[:64])
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def tls_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = await reader.read(4096)
    if first[:1] == b"\x16":
        writer.write(b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03")  # a ServerHello begins
        await writer.drain()
        await asyncio.sleep(0.05)
    _reset(writer)


async def closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


KINDS = {"silent": silent, "tarpit": tarpit, "stream": stream, "huge": huge,
         "random": random_binary, "tls-reset": tls_reset, "closes": closes}


async def main(specs: list[str]) -> None:
    servers = []
    for spec in specs:
        kind, _, port = spec.partition(":")
        handler = KINDS[kind]

        async def guarded(reader, writer, handler=handler):
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        servers.append(await asyncio.start_server(guarded, "0.0.0.0", int(port), backlog=64))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
