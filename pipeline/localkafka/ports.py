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
    size: int, *, low: int = 20000, high: int | None = None, attempts: int = 200
) -> int:
    """The first port of ``size`` consecutive free ports (racy by nature; for tests).

    By default the block lies below the kernel's ephemeral port range, where
    outgoing connections (every Kafka client of a test run) take their local
    ports: a block inside it can be taken between this check and the bind.
    """
    if high is None:
        high = min(60000, _ephemeral_low())
    if high - size <= low:
        raise PortInUseError(f"no room for {size} ports in {low}..{high}")
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(low, high - size)
        if all(port_is_free(base + offset) for offset in range(size)):
            return base
    raise PortInUseError(f"no block of {size} free ports found in {low}..{high}")


def _ephemeral_low(default: int = 32768) -> int:
    """First port of the kernel's ephemeral range (Linux), else ``default``."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default
