"""A real ``redis-server`` on a free loopback port for the store tests (never a fake Redis).

Import the fixtures into a test module (``from redis_server import redis_server``: tests/support is on sys.path, see tests/conftest.py);
tests are skipped, with the reason, only when no ``redis-server`` binary is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_binary", "redis_server", "redis_server_factory"]


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` subprocess: start, wait for PING, pause/resume, kill, restart."""

    def __init__(self, workdir: Path, *, persistent: bool = False, port: int | None = None) -> None:
        binary = redis_binary()
        if binary is None:
            pytest.skip("redis-server binary not found (Debian package redis-server): Redis store tests skipped")
        self.binary = binary
        self.workdir = workdir
        self.persistent = persistent
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.workdir), "--protected-mode", "no"]
        if self.persistent:  # every write fsynced to the AOF: committed data survives a kill -9
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
            self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            log.close()
            if self._wait_ready(timeout):
                return self
            self.stop()
            if attempt < 2 and not self.persistent:
                self.port = _free_port()  # the port was taken meanwhile: try another
        tail = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        import redis

        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5,
                             socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server dies without saving anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the server accepts connections but never answers (a hung server)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the session (``--save "" --appendonly no``); tests use distinct namespaces."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[type]:
    """Start private servers (for tests that kill or pause them); all stopped at teardown."""
    started: list[RedisServer] = []

    def make(*, persistent: bool = False) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", persistent=persistent).start()
        started.append(server)
        return server

    try:
        yield make  # type: ignore[misc]
    finally:
        for server in started:
            server.stop()
