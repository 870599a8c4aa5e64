"""A metrics HTTP endpoint bound to loopback by default."""

from __future__ import annotations

from threading import Thread
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server


class MetricsServer:
    """Serves ``registry`` on ``http://host:port/metrics`` in a daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: Thread | None = None

    def start(self) -> int:
        """Start serving; returns the bound port (useful with ``port=0``)."""
        server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
