"""ESPA through a serial-to-IP converter: the driver opens a pyserial `socket://` URL."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from tests.integration.espa_peer import Dect, PtyPeer
from tests.integration.test_espa_serial import delivery, espa_config, running_link


@contextlib.asynccontextmanager
async def converter(peer: PtyPeer) -> AsyncIterator[int]:
    """A TCP server on loopback relaying bytes to and from a serial line (the pty)."""
    fd = os.open(peer.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def from_line() -> None:
            with contextlib.suppress(BlockingIOError):
                writer.write(os.read(fd, 4096))

        loop.add_reader(fd, from_line)
        try:
            while data := await reader.read(4096):
                os.write(fd, data)
        finally:
            loop.remove_reader(fd)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
        os.close(fd)


async def test_call_through_a_socket_url_reaches_the_paging_system() -> None:
    """A delivery on a `socket://host:port` link arrives at the DECT behind the converter."""
    peer = PtyPeer()
    dect = Dect(peer)
    sim = asyncio.create_task(dect.run(), name="test.dect")
    try:
        async with converter(peer) as port:
            cfg = espa_config(f"socket://127.0.0.1:{port}", "control_station")
            async with running_link(cfg, source=None, handsets={"dect21": "21"}) as (link, _):
                async with asyncio.timeout(5):
                    while not link.connected:
                        await asyncio.sleep(0.02)
                    await link.send(delivery())
                call = dect.calls.get_nowait()
                assert call.header == "1"
                assert call.records["1"] == b"21"
                assert call.records["4"] == b"3"
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
        peer.close()
