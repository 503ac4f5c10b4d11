"""`python -m backend serve`: bind, write the token, recover earlier jobs, run uvicorn.

Prints `Orbitex backend listening on http://HOST:PORT` (flushed) once it accepts requests, so a
parent process that passed --port 0 reads the port from that line.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import IO

from ..assets import archive
from .auth import ensure_token
from .layout import DATA_ENV, DataLayout, default_data_dir
from .store import JobStore
from .supervisor import CANCEL_GRACE_S, WorkerSupervisor, add_engine_arguments, engine_process

LISTENING = "Orbitex backend listening on"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, this machine only; binding another address"
                             " exposes the service to that network, token still required)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port, printed at start)")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"data folder for the token, job records and files (default ${DATA_ENV}"
                             " or ~/.local/share/orbitex)")
    parser.add_argument("--max-upload-mb", type=float, default=2048.0,
                        help="largest accepted job upload in MiB (default 2048)")
    parser.add_argument("--cancel-grace-s", type=float, default=CANCEL_GRACE_S,
                        help="seconds a running job may take to stop after a cancel before its worker is killed")
    parser.add_argument("--archive-max-mb", type=float, default=None,
                        help="largest total uncompressed size of an uploaded archive (view-set zip) in MiB"
                             " (default 16384)")
    parser.add_argument("--archive-max-files", type=int, default=None,
                        help="most files in an uploaded archive (default 50000)")
    parser.add_argument("--archive-max-ratio", type=float, default=None,
                        help="largest compression ratio of an uploaded archive or of a member over 1 MiB (default 200)")
    parser.add_argument("--new-token", action="store_true", help="replace the token in <data>/token with a new one")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    add_engine_arguments(parser)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP.
    # Without it, a reply's headers and body (two writes) wait for the client's delayed ACK: +40 ms
    # per request on a kept-alive connection (bench/service_latency.py).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _lock(layout: DataLayout) -> IO[str] | None:
    """Hold an exclusive lock on the data folder for this process's life (released even on kill -9)."""
    handle = open(layout.lock, "a+")
    try:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # Windows: no flock; one server per folder is then up to the user
        return handle
    except OSError:
        handle.close()
        return None
    return handle


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import ServiceState, create_app

    os.umask(0o077)  # job records, inputs and results are the user's alone (the worker inherits this)
    if args.max_upload_mb <= 0:
        print("error: --max-upload-mb must be positive", file=sys.stderr)
        return 2
    for option, env in ((args.archive_max_mb, archive.MAX_MB_ENV), (args.archive_max_files, archive.MAX_FILES_ENV),
                        (args.archive_max_ratio, archive.MAX_RATIO_ENV)):
        if option is not None:
            if not option > 0:
                print(f"error: --{env.removeprefix('ORBITEX_').lower().replace('_', '-')} must be positive",
                      file=sys.stderr)
                return 2
            os.environ[env] = str(option)  # read where archives are extracted: the worker, which inherits it
    try:
        engine = engine_process(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    layout = DataLayout(args.data or default_data_dir())
    try:
        layout.create()
    except OSError as exc:
        print(f"error: cannot create the data folder {layout.root}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    lock = _lock(layout)
    if lock is None:
        print(f"error: another Orbitex backend is already using the data folder {layout.root}", file=sys.stderr)
        return 1
    token = ensure_token(layout.token, renew=args.new_token)
    store = JobStore(layout.database)
    interrupted = store.mark_interrupted("interrupted: the backend stopped while this job was running; submit it again")
    shutil.rmtree(layout.uploads, ignore_errors=True)  # half-received uploads of a process that died
    layout.uploads.mkdir(mode=0o700)
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}, reachable from other machines; anyone holding the token can run"
              " jobs, and traffic is plain HTTP (put TLS in front for untrusted networks)", file=sys.stderr)

    def announce() -> None:
        print(f"Orbitex data folder: {layout.root} (token in {layout.token})"
              + (f"; {interrupted} job(s) marked interrupted" if interrupted else ""), flush=True)
        print(f"{LISTENING} {url}", flush=True)

    max_upload = int(args.max_upload_mb * (1 << 20))
    state = ServiceState(layout, store, token, max_upload, WorkerSupervisor(layout, store, args.cancel_grace_s, engine), announce)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    file_log = logging.FileHandler(layout.logs / "server.log")
    file_log.setLevel(logging.WARNING)
    file_log.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.getLogger("orbitex").addHandler(file_log)
    config = uvicorn.Config(create_app(state), log_level=args.log_level, access_log=args.log_level in ("info", "debug"),
                            lifespan="on", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its orderly shutdown
        return 130
    finally:
        lock.close()
    return 0
