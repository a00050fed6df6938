"""The local stack's lifecycle: the port check lets a port held only by TIME_WAIT through
(a restart right after a stop), and no PostgreSQL is left running after the stack stops,
even one a CLI command restarted meanwhile."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abplatform.local.echo import DELAY_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.processes import free_port
from abplatform.local.stack import LocalStack, PortInUseError, check_port_free


def _time_wait_port() -> int:
    """A port whose server closed an accepted connection first (TIME_WAIT on its side)
    and stopped listening."""
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its (port, peer) pair goes to TIME_WAIT
    time.sleep(0.05)
    client.close()
    server.close()
    return port


def test_a_port_held_only_by_time_wait_is_not_refused() -> None:
    port = _time_wait_port()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True)
    if states.returncode == 0:
        assert "TIME-WAIT" in states.stdout
    check_port_free(port, "router", "--router-port")  # does not raise


def test_a_port_with_a_listener_is_refused() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with pytest.raises(PortInUseError, match="--router-port"):
            check_port_free(server.getsockname()[1], "router", "--router-port")


def _postmaster(home: Path) -> int | None:
    pid_file = home / "pg" / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split("\n", 1)[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def test_no_postgresql_is_left_after_the_stack_stops_even_one_a_cli_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    home = tmp_path / "home"
    echo = {"abplatform/model-v1": BackendSpec(target="abplatform.local.echo:EchoBackend",
                                               env={DELAY_ENV: "1"})}  # fmt: skip
    with LocalStack(home, backends=echo) as stack:
        first = _postmaster(home)
        assert first is not None and stack.router is not None
        os.kill(first, signal.SIGINT)  # PostgreSQL goes away ...
        deadline = time.monotonic() + 15
        while _postmaster(home) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cli = subprocess.run(  # ... and a CLI command starts it again on the same folder
            [sys.executable, "-m", "abplatform.cli", "experiment", "list"],
            env={**os.environ, "ABPLATFORM_HOME": str(home)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert _postmaster(home) is not None
    deadline = time.monotonic() + 20
    while _postmaster(home) is not None:
        assert time.monotonic() < deadline, "PostgreSQL is still running after the stack stopped"
        time.sleep(0.1)
