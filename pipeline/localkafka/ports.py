"""Port checks: is a port free, and a free contiguous block for tests."""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterable

from pipeline.localkafka.errors import PortInUseError

_HOST = "127.0.0.1"


def port_is_free(port: int, host: str = _HOST) -> bool:
    """True if a server could listen on ``host:port`` now.

    ``SO_REUSEADDR`` mirrors what the broker does, so sockets lingering in
    TIME_WAIT from a previous run do not count as taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def require_free_ports(ports: Iterable[int], host: str = _HOST) -> None:
    """Raise :class:`PortInUseError` naming every taken port and the fix."""
    taken = [port for port in ports if not port_is_free(port, host)]
    if taken:
        listed = ", ".join(str(port) for port in taken)
        raise PortInUseError(
            f"port(s) {listed} on {host} already in use; stop what listens there "
            f"(`fraud kafka status`, `ss -ltnp | grep {taken[0]}`) or pick another base port "
            "(--port or FRAUD_LOCAL_KAFKA_PORT)"
        )


def find_free_port_block(
    size: int, *, low: int = 20000, high: int = 60000, attempts: int = 200
) -> int:
    """The first port of ``size`` consecutive free ports (racy by nature; for tests)."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(low, high - size)
        if all(port_is_free(base + offset) for offset in range(size)):
            return base
    raise PortInUseError(f"no block of {size} free ports found in {low}..{high}")
