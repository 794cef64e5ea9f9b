"""Posting to an endpoint without being turned against our own network (SSRF).

The host is resolved once, every address it resolves to is checked, and the connection goes to
a checked address, so a DNS answer that changes between the check and the connect (rebinding)
cannot steer it elsewhere. Short timeouts, no redirects followed, only the answer's first bytes
read.
"""

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECT_TIMEOUT_SECONDS = 5.0
TOTAL_TIMEOUT_SECONDS = 10.0
# The delivery log keeps this much of each answer: enough to see an error message.
RESPONSE_BYTES = 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Shared address space (carrier-grade NAT): not "private" to Python, but not the Internet either.
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Cloud metadata services; most are link-local already, listed so the intent is plain.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


class RefusedAddress(Exception):
    """The URL points at an address deliveries may not reach; the message says which."""


class DeliveryError(Exception):
    """The endpoint could not be reached or gave no answer in time."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Answer:
    status_code: int
    duration_ms: int
    body_start: bytes


def is_public(address: IPAddress) -> bool:
    """Whether an address is on the public Internet: not loopback, private, link-local,
    unique-local, shared (CGNAT), multicast, unspecified, reserved or a metadata service."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: judge it instead.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return not (
        not address.is_global
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or (isinstance(address, ipaddress.IPv4Address) and address in CGNAT)
        or address in METADATA_ADDRESSES
    )


def parse_target(url: str) -> Target:
    """An http(s) URL with a host and no credentials in it; ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with https:// or http://")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("put no credentials in the URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("the URL's port is not a number from 1 to 65535") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, path=path)


def resolve(target: Target, *, allow_private: bool) -> list[IPAddress]:
    """Every address the host resolves to, refused if any of them is not public."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise DeliveryError(f"cannot resolve {target.host}: {error}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"): the address itself is what gets judged.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    refused = [address for address in addresses if not is_public(address)]
    if refused and not allow_private:
        raise RefusedAddress(
            f"{target.host} resolves to {refused[0]}, which is not a public address "
            "(set OUTGOING_WEBHOOK_ALLOW_PRIVATE=true to allow private networks)"
        )
    if not addresses:
        raise DeliveryError(f"{target.host} resolves to no address")
    return addresses


def check_url(url: str, *, allow_private: bool) -> Target:
    """Refuse, before storing it, a URL that deliveries could never be sent to."""
    target = parse_target(url)
    resolve(target, allow_private=allow_private)
    return target


class _PinnedConnection(http.client.HTTPConnection):
    """http.client speaking over a socket we connected (and checked) ourselves."""

    def __init__(self, host: str, port: int, sock: socket.socket) -> None:
        super().__init__(host, port)
        self.sock = sock

    def connect(self) -> None:  # only reached if the socket was closed: never reconnect
        raise DeliveryError("connection closed")


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool) -> Answer:
    """POST `body`; the status and the answer's first bytes, or DeliveryError/RefusedAddress."""
    target = parse_target(url)
    addresses = resolve(target, allow_private=allow_private)
    started = time.monotonic()
    deadline = started + TOTAL_TIMEOUT_SECONDS
    sock = _connect(addresses, target.port, deadline)
    connection: _PinnedConnection | None = None
    try:
        sock.settimeout(_remaining(deadline))
        if target.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=target.host)
        connection = _PinnedConnection(target.host, target.port, sock)
        connection.request("POST", target.path, body=body, headers={
            **headers, "Host": _host_header(target), "Content-Length": str(len(body)),
        })  # fmt: skip
        sock.settimeout(_remaining(deadline))
        response = connection.getresponse()
        status_code = response.status
        body_start = _read_start(response, sock, deadline)
    except (OSError, http.client.HTTPException, ssl.SSLError) as error:
        raise DeliveryError(_describe(error)) from None
    finally:
        if connection is not None:
            connection.close()
        sock.close()
    duration_ms = round((time.monotonic() - started) * 1000)
    return Answer(status_code=status_code, duration_ms=duration_ms, body_start=body_start)


def _connect(addresses: list[IPAddress], port: int, deadline: float) -> socket.socket:
    last_error: OSError | None = None
    for address in addresses:
        timeout = min(CONNECT_TIMEOUT_SECONDS, _remaining(deadline))
        try:
            return socket.create_connection((str(address), port), timeout=timeout)
        except OSError as error:
            last_error = error
    raise DeliveryError(_describe(last_error) if last_error else "no address to connect to")


def _read_start(response: http.client.HTTPResponse, sock: socket.socket, deadline: float) -> bytes:
    """Up to RESPONSE_BYTES of the body; a slow or endless body is cut off, not waited for."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < RESPONSE_BYTES and time.monotonic() < deadline:
            sock.settimeout(_remaining(deadline))
            chunk = response.read1(RESPONSE_BYTES - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (OSError, http.client.HTTPException):
        pass  # the status already answered; the body is only kept for the log
    return b"".join(chunks)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeliveryError(f"no answer within {TOTAL_TIMEOUT_SECONDS:g} s")
    return remaining


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no answer within {TOTAL_TIMEOUT_SECONDS:g} s"
    return f"{type(error).__name__}: {error}"[:500]
