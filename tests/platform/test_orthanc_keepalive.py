"""A kept-alive connection that Orthanc closes as a request goes out costs the reader nothing.

Orthanc (CivetWeb) closes an idle keep-alive connection after a short timeout; a request sent on
it at that moment ends with "Server disconnected without sending a response" and, before the
transport resent reads, failed a viewer frame with a 502. The race is a matter of milliseconds
against a real Orthanc, so a real HTTP server here makes it happen every time: it answers the
first request of each connection and closes the connection on reading the second one.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from reviewer.integrations.orthanc import StaleConnectionRetry


class ClosesSecondRequest:
    """A loopback HTTP/1.1 server: one answer per connection, then a close without answering."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.answered: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> str:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return ""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next((int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(4096)
        return lines[0].decode()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            first = self._read_request(conn)
            if not first:
                return
            self.answered.append(first)
            payload = f"connection {self.connections}".encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(payload)
            conn.sendall(head + payload)
            self._read_request(conn)  # the second request on this connection: read, never answered

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[ClosesSecondRequest]:
    s = ClosesSecondRequest()
    yield s
    s.close()


def test_a_read_on_a_connection_closed_under_it_is_sent_again_on_a_new_one(server: ClosesSecondRequest) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", transport=StaleConnectionRetry()) as client:
        assert client.get("/a").text == "connection 1"
        second = client.get("/b")  # goes out on the kept-alive connection, which closes under it
        assert second.status_code == 200
        assert second.text == "connection 2"
        assert client.head("/c").status_code == 200  # HEAD is a read too
    assert server.answered == ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "HEAD /c HTTP/1.1"]
    assert server.connections == 3


def test_orthancs_read_only_searches_are_sent_again_too(server: ClosesSecondRequest) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", transport=StaleConnectionRetry()) as client:
        client.get("/a")
        assert client.post("/tools/lookup", content=b"1.2.3").text == "connection 2"
        assert client.post("/tools/find", json={"Level": "Study", "Query": {}}).text == "connection 3"
    assert server.answered == ["GET /a HTTP/1.1", "POST /tools/lookup HTTP/1.1", "POST /tools/find HTTP/1.1"]


def test_a_write_is_never_sent_twice(server: ClosesSecondRequest) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", transport=StaleConnectionRetry()) as client:
        client.get("/a")
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/instances", content=b"DICM")  # Orthanc may have stored it: the caller decides
        client.get("/b")
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/tools/lookup/extra", content=b"1.2.3")  # not one of the searches
    assert server.answered == ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]


def test_without_the_resend_the_same_race_fails_the_read(server: ClosesSecondRequest) -> None:
    """The server really produces the failure the transport guards against."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        client.get("/a")
        with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
            client.get("/b")


def test_the_shared_orthanc_client_resends_reads() -> None:
    from reviewer.integrations.orthanc import orthanc

    assert isinstance(orthanc()._transport, StaleConnectionRetry)
