"""ZeroMQ CURVE for the daemon's own sockets (decisions PUB, control REP) when they leave loopback.

Keys are ZeroMQ certificate files (``zmq.auth.create_certificates``; ``rtdecode keys`` makes
them): the daemon holds the server's secret certificate, and accepts only clients whose public
certificates lie in the authorized-clients folder (a ``ThreadAuthenticator`` checks every
connection). A client holds its own secret certificate and the server's public one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from rtdecode.errors import RtdecodeError


@dataclass(frozen=True)
class CurveKeys:
    public: bytes
    secret: bytes


def load_keys(path: str | Path, need_secret: bool = True) -> CurveKeys:
    """A certificate file (``NAME.key_secret``, or ``NAME.key`` for a public key only)."""
    path = Path(path)
    if not path.is_file():
        raise RtdecodeError(f"CURVE certificate {path}: no such file (make one with `rtdecode keys`)")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as err:
        raise RtdecodeError(f"CURVE certificate {path}: not a ZeroMQ certificate ({err})") from None
    if need_secret and not secret:
        raise RtdecodeError(f"CURVE certificate {path}: holds no secret key (give the .key_secret file)")
    return CurveKeys(public, secret or b"")


def make_server(sock: zmq.Socket, server: CurveKeys) -> None:
    """Before bind: ``sock`` encrypts and authenticates as the CURVE server."""
    sock.curve_secretkey = server.secret
    sock.curve_publickey = server.public
    sock.curve_server = True


def make_client(sock: zmq.Socket, client: CurveKeys, server_public: bytes) -> None:
    """Before connect: ``sock`` talks CURVE to the server whose public key is ``server_public``."""
    sock.curve_secretkey = client.secret
    sock.curve_publickey = client.public
    sock.curve_serverkey = server_public


def start_authenticator(context: zmq.Context, authorized_clients: str | Path) -> ThreadAuthenticator:
    """Accept CURVE clients whose public certificates are in ``authorized_clients`` (a folder)."""
    folder = Path(authorized_clients)
    if not folder.is_dir() or not any(folder.glob("*.key")):
        raise RtdecodeError(f"CURVE authorized clients {folder}: expected a folder of client .key certificates")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(folder))
    return auth


def create_keypair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(folder), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)
