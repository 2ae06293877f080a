"""Is the Kafka broker at HOST:PORT ready? Exit 0 when yes, 1 with the reason when not.

Used by ``scripts/services``; standard library only, so it runs with any python3
before the project's virtualenv exists. It sends a Metadata request (v1, no topics)
and wants the broker to list at least one live broker and an active controller:
in KRaft mode that means the quorum has elected its controller and the broker
has registered with it, not merely that the port accepts connections.
"""

from __future__ import annotations

import socket
import struct
import sys

API_METADATA = 3
VERSION = 1
CORRELATION_ID = 7
CLIENT_ID = b"ludex-ready"


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def _metadata(host: str, port: int, timeout: float) -> tuple[int, int]:
    """Return (number of live brokers, controller id)."""
    header = struct.pack(">hhih", API_METADATA, VERSION, CORRELATION_ID, len(CLIENT_ID))
    body = struct.pack(">i", 0)  # an empty topic array: brokers and controller only
    request = header + CLIENT_ID + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        data = _recv_exactly(sock, size)
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return int(value)

    def skip_string() -> None:
        nonlocal offset
        length = take(">h")
        offset += max(length, 0)

    if take(">i") != CORRELATION_ID:
        raise ValueError("the response answers another request")
    brokers = take(">i")
    for _ in range(max(brokers, 0)):
        take(">i")  # node id
        skip_string()  # host
        take(">i")  # port
        skip_string()  # rack
    controller = take(">i")
    return brokers, controller


def main(argv: list[str]) -> int:
    address = argv[1] if len(argv) > 1 else "127.0.0.1:19092"
    timeout = float(argv[2]) if len(argv) > 2 else 2.0
    host, _, port = address.rpartition(":")
    try:
        brokers, controller = _metadata(host, int(port), timeout)
    except (OSError, ValueError, struct.error) as exc:
        print(f"kafka at {address} is not ready: {exc}", file=sys.stderr)
        return 1
    if brokers < 1 or controller < 0:
        print(
            f"kafka at {address} is not ready: {brokers} live brokers, controller {controller}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
