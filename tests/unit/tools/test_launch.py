"""Ports for test, bench and soak servers: distinct, free on every interface, and outside
the range the kernel hands to client connections."""

from __future__ import annotations

import socket

from tools import launch


def test_two_ports_are_distinct_and_below_the_ephemeral_range(monkeypatch):
    monkeypatch.setattr(launch, "_ephemeral_range", lambda: (32768, 60999))
    for _ in range(50):
        http_port, grpc_port = launch.free_ports(2)
        assert http_port != grpc_port
        assert min(http_port, grpc_port) >= 20000
        assert max(http_port, grpc_port) < 32768


def test_a_port_something_listens_on_is_skipped(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        monkeypatch.setattr(launch, "_ephemeral_range", lambda: (32768, 60999))
        free = next(p for p in range(20000, 32768) if p != taken and _bindable(p))
        monkeypatch.setattr(launch.random, "sample", lambda population, k: [taken, free])
        assert launch.free_ports(1) == [free]


def test_without_room_below_the_ephemeral_range_the_kernel_chooses(monkeypatch):
    monkeypatch.setattr(launch, "_ephemeral_range", lambda: (1024, 65535))
    first, second = launch.free_ports(2)
    assert first != second and first > 0 and second > 0


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True
