"""A TCP proxy on loopback that can lose a reply: the command reaches the server and runs, but
the client's connection breaks before the answer arrives (the ambiguous failure a safe retry
policy must handle). Runs in the test's asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib


class ReplyLosingProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>.

    After :meth:`lose_next_reply`, the next chunk the server sends on any connection is
    dropped and that connection is closed on both sides.
    """

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._replies_to_lose = 0
        self.replies_lost = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> ReplyLosingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def lose_next_reply(self) -> None:
        self._replies_to_lose += 1

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target_port)
            upstream = asyncio.create_task(self._pump(client_r, server_w))
            try:
                while data := await server_r.read(65536):
                    if self._replies_to_lose:
                        self._replies_to_lose -= 1
                        self.replies_lost += 1
                        break
                    client_w.write(data)
                    await client_w.drain()
            finally:
                upstream.cancel()
                server_w.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            client_w.close()
            with contextlib.suppress(Exception):
                await client_w.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
