"""Start Ray locally (the default) or join a running cluster by address."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from types import ModuleType

from ray_cluster.errors import ClusterError, first_line

__all__ = ["HUB_ENV", "check_address", "connect", "disconnect"]

# what a worker needs to behave like the driver with the Hugging Face libraries (offline mode
# is read at their import: a worker must get it from its environment)
HUB_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


PROBE_SECONDS = 5.0
JOIN_SECONDS = 25.0
# joining in a child process first: a server that speaks gRPC but is not a Ray cluster (or a
# proxy in between) keeps ray.init retrying for minutes, and only a process can be stopped
_JOIN = (
    "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False, "
    "logging_level='ERROR'); ray.shutdown()"
)
_AUTH_HINT = (
    " (the cluster uses Ray's token authentication: set RAY_AUTH_MODE=token and give its token in "
    "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
)
# host:port, [v6-host]:port, optionally ray:// (Ray Client); "auto" is Ray's own lookup
_ADDRESS = re.compile(r"(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})")
# what a gRPC server (Ray's GCS, its client server) answers to an HTTP/2 client preface: a
# SETTINGS frame, the frame type at byte 3 of its 9-byte header (RFC 9113, section 3.4)
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


def check_address(address: str, timeout: float = PROBE_SECONDS, join_timeout: float = JOIN_SECONDS) -> None:
    """A ``ClusterError`` within about ``timeout`` seconds when ``address`` cannot be a Ray
    cluster: malformed, a host that does not resolve, nothing listening, or a server that is
    not gRPC (a web server, say); within ``join_timeout`` more when a test join from a child
    process fails (a token the cluster refuses) or hangs (a gRPC server that is not Ray's). Ray's
    own ``ray.init`` retries such addresses for minutes (Ray 2.60) before it gives up. "auto" is
    left to Ray."""
    if address == "auto":
        return
    m = _ADDRESS.fullmatch(address.strip())
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ClusterError(
            f"--ray-address {address!r}: expected HOST:PORT (the head node's GCS, port 6379 by default), "
            "ray://HOST:PORT (Ray Client, 10001) or auto"
        )
    host, port = m["host"].strip("[]"), int(m["port"])
    where = f"--ray-address {address}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9 and (chunk := sock.recv(9 - len(head))):
                head += chunk
    except socket.gaierror:
        raise ClusterError(f"{where}: unknown host {host!r}") from None
    except TimeoutError:
        raise ClusterError(f"{where}: no answer from {host}:{port} within {timeout:g}s") from None
    except OSError as e:  # refused, unreachable network
        raise ClusterError(f"{where}: cannot connect to {host}:{port}: {e.strerror or first_line(e)}") from None
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise ClusterError(
            f"{where}: {host}:{port} answers, but not as a Ray cluster's gRPC server (give the head node's "
            "GCS port, 6379 by default, or ray://HOST:10001 for Ray Client)"
        )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _JOIN, address], capture_output=True, text=True, timeout=join_timeout
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(
            f"{where}: {host}:{port} accepts connections but no Ray cluster answered within {join_timeout:g}s"
        ) from None
    if proc.returncode != 0:
        raise ClusterError(f"{where}: cannot join the Ray cluster: {_join_error(proc.stderr)}")


def _join_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "ray.init failed")
    return last + (_AUTH_HINT if "Unauthenticated" in stderr or "InvalidAuthToken" in stderr else "")


def connect(
    address: str | None = None,
    num_cpus: int | None = None,
    *,
    py_modules: Sequence[ModuleType] = (),
    env_vars: Sequence[str] = HUB_ENV,
    checked: bool = False,
) -> bool:
    """Make Ray available to this process; return True when this call started it.

    Locally Ray starts a new instance of its own, without its dashboard. Ray 2.60's core servers (GCS, raylet,
    workers) listen on the machine's address whatever node IP is asked for
    (``ray.init`` rewrites 127.0.0.1 to a reachable IP), so they are protected by
    Ray's token authentication, which is on by default and left on here. Joining a
    cluster ships ``py_modules`` (the caller's own packages) to its workers, so the
    cluster only needs the same third-party packages installed. The environment
    variables named in ``env_vars`` reach the workers with the values they have here. An
    address is checked first (``check_address``) unless the caller says it did (``checked``).
    """
    import ray

    if ray.is_initialized():
        return False
    from ray_cluster.train import TRAIN_ENV

    env = {**TRAIN_ENV, **{k: os.environ[k] for k in (*env_vars, *TRAIN_ENV) if k in os.environ}}
    if address:
        if not checked:  # the caller's check_address, before its own slow setup
            check_address(address)
        try:
            ray.init(
                address=address,
                runtime_env={"py_modules": list(py_modules), "env_vars": env},
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            hint = _AUTH_HINT if "Failed to connect" in str(e) and os.environ.get("RAY_AUTH_MODE") != "token" else ""
            raise ClusterError(f"--ray-address {address}: cannot join the Ray cluster: {first_line(e)}{hint}") from None
        return True
    ray.init(
        # "local": a new instance, never a cluster that `ray start` left on this machine (which
        # ray.init() without an address joins) nor RAY_ADDRESS's: joining is --ray-address's job
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        # trial output (peft and transformers warnings) stays in Ray's logs; the
        # driver prints one line per finished trial instead
        log_to_driver=False,
        configure_logging=False,
    )
    return True


def disconnect(started: bool) -> None:
    """Shut Ray down if ``connect`` started it; leave a joined cluster or a caller's Ray alone."""
    import ray

    if started and ray.is_initialized():
        ray.shutdown()
