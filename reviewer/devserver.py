"""Django's development server (``manage.py runserver``: the demo, the viewer benchmark, the
screenshot scripts; and the browser tests' live server) with TCP_NODELAY on every connection.

That server keeps HTTP/1.1 connections alive when a response has a Content-Length, and writes a
response's headers and its body in separate ``send`` calls. With Nagle's algorithm on (the
socketserver default), the body then waits until the client acknowledges the headers, which
a client delays by up to 40 ms (Linux's delayed ACK): every response on a kept-alive connection
took 40 ms longer than its work (``/app-config.js``: 47 ms instead of 4.5 ms; a 33 kB frame
through the DICOMweb proxy: 64 ms instead of 21 ms), and OHIF makes about 80 requests before its
first image. gunicorn sets TCP_NODELAY itself.
"""

from __future__ import annotations

from django.core.servers import basehttp


def enable_tcp_nodelay() -> None:
    """Send each write of the development server at once (read per connection, so it applies
    to every connection accepted after this call)."""
    basehttp.WSGIRequestHandler.disable_nagle_algorithm = True
