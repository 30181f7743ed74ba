"""Small servers that speak just enough of a protocol portatlas has no module for, so that
only nmap's probes can name them (bytes built from the protocols' documents). Run inside a
test namespace: `python fake_services.py KIND:PORT...`; prints 'ready'. Writes no files.

  epmd       Erlang's port mapper: answers the NAMES request (0x00 0x01 'n') with its
             port (4369 as 32 bits) and one line per node, then closes
  greeter    a text service: '220 box.example service ready', then '500 unknown command'
             to every line (what the old MTP heuristic mistook for MTP)
  acap-tls   implicit TLS (cert given as CERT,KEY after the port), inside an ACAP greeting
  xdmcp      UDP: answers an XDMCP Query with Willing (hostname 'lab', status 'Linux 6')
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import sys

EPMD_NAMES = b"\0\0\x11\x11name rabbit at port 25672\n"
ACAP = b'* ACAP (IMPLEMENTATION "CommuniGate Pro ACAP 6.3.1") (SASL "PLAIN")\r\n'


def xdmcp_willing(hostname: bytes = b"lab", status: bytes = b"Linux 6") -> bytes:
    body = struct.pack(">H", 0) + struct.pack(">H", len(hostname)) + hostname + \
        struct.pack(">H", len(status)) + status
    return struct.pack(">HHH", 1, 5, len(body)) + body


async def epmd(reader, writer) -> None:
    request = await reader.read(64)
    if request.startswith(b"\0\x01n"):
        writer.write(EPMD_NAMES)
        await writer.drain()


async def greeter(reader, writer) -> None:
    writer.write(b"220 box.example service ready\r\n")
    await writer.drain()
    for _ in range(20):
        line = await reader.readline()
        if not line:
            return
        writer.write(b"500 unknown command\r\n")
        await writer.drain()


async def acap(reader, writer) -> None:
    writer.write(ACAP)
    await writer.drain()
    await reader.read(4096)


class XDMCP(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if data[:4] == b"\0\x01\0\x02":  # Query
            self.transport.sendto(xdmcp_willing(), addr)


async def main(specs: list[str]) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for spec in specs:
        kind, port, *rest = spec.split(":")
        if kind == "xdmcp":
            await loop.create_datagram_endpoint(XDMCP, local_addr=("0.0.0.0", int(port)))
            continue
        handler = {"epmd": epmd, "greeter": greeter, "acap-tls": acap}[kind]
        context = None
        if kind.endswith("-tls"):
            cert, key = rest[0].split(",")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)

        async def guarded(reader, writer, handler=handler):
            try:
                await asyncio.wait_for(handler(reader, writer), 10)
            except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        servers.append(await asyncio.start_server(guarded, "0.0.0.0", int(port), ssl=context,
                                                  backlog=64))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers), asyncio.sleep(600))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
