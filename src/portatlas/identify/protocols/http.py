"""HTTP/1.x and HTTP/2.

HTTP/1.x: one GET / with Connection: close; the status line proves HTTP, the Server header
names the product, the page title and a few headers are kept as facts.

HTTP/2: over TLS the driver offers ALPN h2 first and tells us what was chosen (ctx.tls);
in clear text a server that only speaks HTTP/2 ("prior knowledge", h2c) answers our
HTTP/1.1 request with binary frames (SETTINGS ... GOAWAY), which we recognise, and the
separate h2c probe sends the connection preface itself.

The service carried: HTTP is often only the carrier. When the reply itself says what is
carried, the verdict names that service (protocol `ipp` or `http-proxy`, extra.carrier =
"http"), from the same one exchange, whatever the timing of nmap's own probes:
 - ipp: the Server header carries an `IPP/<version>` product token (RFC 8011 section 5.4.3
   asks IPP printers for it; CUPS sends "CUPS/2.4 IPP/2.1"), or the body is application/ipp;
 - http-proxy: a 407 status or a Proxy-Authenticate header (RFC 9110: only a proxy sends
   them), or the Server header names a forward-proxy product (PROXY_PRODUCTS: software that is
   a forward proxy by nature, as nmap's own lines say). A reverse proxy (nginx, Varnish,
   HAProxy...) serves HTTP to its clients: it stays `http`.
Nothing else names a carried service: an ordinary page stays `http`.
"""

from __future__ import annotations

import html
import re
import struct

from portatlas import __version__

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, is_prefix, split_product

MAX_HEADERS = 65536
BODY_WANTED = 16384   # body bytes read while looking for <title>
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = 0x4
H2_GOAWAY = 0x7
_STATUS = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.I | re.S)

# Server header product token (lower case) -> the name people (and nmap) use
_PRODUCTS = {
    "apache": "Apache httpd", "microsoft-iis": "Microsoft IIS httpd", "nginx": "nginx",
    "lighttpd": "lighttpd", "openresty": "OpenResty", "caddy": "Caddy",
    "apache-coyote": "Apache Tomcat", "gunicorn": "Gunicorn", "uvicorn": "Uvicorn",
    "werkzeug": "Werkzeug httpd", "jetty": "Jetty", "cherokee": "Cherokee httpd",
    "tengine": "Tengine", "envoy": "Envoy", "cloudflare": "Cloudflare", "h2o": "H2O",
    "litespeed": "LiteSpeed httpd", "boa": "Boa httpd", "mini_httpd": "mini_httpd",
    "thttpd": "thttpd", "squid": "Squid http proxy", "varnish": "Varnish",
    "python": "Python http.server", "simplehttp": "SimpleHTTPServer", "kestrel": "Kestrel",
    "cowboy": "Cowboy httpd", "tornadoserver": "Tornado httpd", "twistedweb": "Twisted Web",
    "goahead-webs": "GoAhead WebServer", "mongoose": "Mongoose httpd", "traefik": "Traefik",
    "haproxy": "HAProxy", "minio": "MinIO", "hiawatha": "Hiawatha", "webrick": "WEBrick httpd",
    "puma": "Puma", "node.js": "Node.js", "express": "Express",
}


# Server-header product tokens (lower case) of software that is a forward HTTP proxy by nature
PROXY_PRODUCTS = frozenset({"squid", "tinyproxy", "privoxy", "polipo", "ccproxy", "3proxy",
                            "wingate", "ziproxy", "wwwoffle", "cntlm"})
_IPP_TOKEN = re.compile(r"(?:^|[\s,;])IPP/\d+(?:\.\d+)?\b", re.I)
CARRIED_CONFIDENCE = 0.9  # the reply names the service carried (an error status included)


def carried_service(response: "Response") -> tuple[str, str] | None:
    """(service, why) when the reply says what HTTP carries here (see the module text)."""
    headers = response.headers
    server = headers.get("server", "")
    if _IPP_TOKEN.search(server):
        return "ipp", f"the Server header carries an IPP product token ({server})"
    if headers.get("content-type", "").lower().startswith("application/ipp"):
        return "ipp", "the body is application/ipp"
    if response.status == 407 or "proxy-authenticate" in headers:
        return "http-proxy", "407 / Proxy-Authenticate: only a proxy asks for proxy credentials"
    first = server.split()[0] if server.split() else ""
    name = split_product(first)[0] if first else None
    if name and name.lower() in PROXY_PRODUCTS:
        return "http-proxy", f"the Server header names forward-proxy software ({name})"
    return None


def request(ctx) -> bytes:
    host = ctx.server_name or ctx.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = 443 if ctx.in_tls else 80
    if ctx.port != default:
        host = f"{host}:{ctx.port}"
    return (f"GET / HTTP/1.1\r\nHost: {host}\r\n"
            f"User-Agent: portatlas/{__version__} (service identification)\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii", "replace")


def server_product(server: str) -> tuple[str | None, str | None, str | None]:
    """(product, version, os hint) from a Server header such as 'Apache/2.4.57 (Debian)'."""
    first = server.split()[0] if server.split() else ""
    name, version = split_product(first)
    if name is None:
        return None, None, None
    if "(" in first and version is None:  # Jetty(9.4.z)
        inner = re.match(r"^([A-Za-z][\w.-]*)\(([\d.]+\w*)", first)
        if inner:
            name, version = inner.group(1), inner.group(2)
    product = _PRODUCTS.get(name.lower(), name)
    os_hint = None
    found = re.search(r"\((Debian|Ubuntu|Red Hat|CentOS|Fedora|Win32|Win64|Unix|FreeBSD)\)",
                      server, re.I)
    if found:
        os_hint = found.group(1)
    return product, version, os_hint


def looks_like_h2(data: bytes) -> bool:
    """An HTTP/2 frame on stream 0 (SETTINGS or GOAWAY) at the start of `data`."""
    if len(data) < 9:
        return False
    length = int.from_bytes(data[:3], "big")
    kind, stream = data[3], struct.unpack(">I", data[5:9])[0] & 0x7FFFFFFF
    return stream == 0 and kind in (H2_SETTINGS, H2_GOAWAY) and length <= 16384 and \
        (kind != H2_SETTINGS or length % 6 == 0)


class Response:
    """An HTTP/1.x response parsed as far as the bytes go."""

    def __init__(self, data: bytes) -> None:
        self.status_line = _STATUS.match(data)
        self.headers: dict[str, str] = {}
        self.header_end = data.find(b"\r\n\r\n")
        sep = 4
        if self.header_end < 0:
            self.header_end, sep = data.find(b"\n\n"), 2
        self.complete_headers = self.header_end >= 0
        self.body = data[self.header_end + sep:] if self.complete_headers else b""
        if self.status_line:
            head = data[self.status_line.end():self.header_end if self.complete_headers
                        else len(data)]
            for raw in head.split(b"\n")[:100]:
                name, sep_, value = raw.partition(b":")
                if sep_ and name.strip():
                    key = name.strip().decode("latin-1").lower()
                    self.headers.setdefault(key, clean(value.decode("latin-1"), 300))

    @property
    def status(self) -> int:
        return int(self.status_line.group(3)) if self.status_line else 0

    @property
    def title(self) -> str | None:
        found = _TITLE.search(self.body[:BODY_WANTED])
        if not found:
            return None
        text = found.group(1).decode("utf-8", "replace")
        return clean(html.unescape(text), 200) or None

    def wants_more_body(self) -> bool:
        ctype = self.headers.get("content-type", "")
        if "html" not in ctype.lower() and ctype:
            return False
        if self.title is not None or len(self.body) >= BODY_WANTED:
            return False
        length = self.headers.get("content-length")
        if length and length.isdigit() and len(self.body) >= int(length):
            return False
        if self.status in (204, 304) or 100 <= self.status < 200:
            return False
        return True


@register
class HTTPProbe(Probe):
    name = "http"
    transport = "tcp"
    ports = frozenset({80, 81, 591, 3000, 5000, 8000, 8008, 8080, 8081, 8088, 8888, 9000, 9090})
    services = frozenset({"http", "www", "www-http", "http-alt", "http-proxy", "https",
                          "webcache", "http-mgmt", "tproxy", "radan-http", "sunproxyadmin",
                          "pcsync-https", "https-alt", "ddi-tcp-1", "irdmi"})
    rarity = 9
    read_budget = MAX_HEADERS + BODY_WANTED

    def start(self) -> Step:
        return Send(request(self.ctx))

    def feed(self, data: bytes) -> Step:
        if not is_prefix(data, b"HTTP/"):
            if looks_like_h2(data):
                return self._h2_verdict(data)
            return NoMatch("not an HTTP response")
        if len(data) < 12 or (b"\n" not in data and len(data) < 1024):
            return Wait()
        response = Response(data)
        if not response.status_line:
            return NoMatch("malformed HTTP status line")
        if not response.complete_headers:
            return Wait() if len(data) < MAX_HEADERS else self._verdict(response, data)
        if response.wants_more_body():
            return Wait()
        return self._verdict(response, data)

    def finish(self, data: bytes) -> Step:
        if looks_like_h2(data):
            return self._h2_verdict(data)
        response = Response(data)
        if not response.status_line:
            return NoMatch("no HTTP response")
        return self._verdict(response, data)

    def _verdict(self, response: Response, data: bytes) -> Verdict:
        headers = response.headers
        extra: dict = {"status": response.status,
                       "http_version": f"{response.status_line.group(1).decode()}."
                                       f"{response.status_line.group(2).decode()}"}
        product = version = None
        if headers.get("server"):
            extra["server"] = headers["server"]
            product, version, os_hint = server_product(headers["server"])
            if os_hint:
                extra["os"] = os_hint
        title = response.title
        if title:
            extra["title"] = title
        for key in ("x-powered-by", "location", "content-type", "www-authenticate", "via"):
            if headers.get(key):
                extra[key.replace("-", "_")] = headers[key]
        alpn = (self.ctx.tls or {}).get("alpn")
        if alpn == "h2":
            extra["http2"] = "ALPN h2"
        confidence = 1.0 if response.complete_headers else 0.85
        if response.status == 400:
            # often our request was wrong for this port (TLS expected, a proxy, an API);
            # still HTTP, but let the other probes (TLS first) try for a better answer
            confidence = 0.7
            if b"plain HTTP request was sent to HTTPS port" in data:
                extra["note"] = "the server expects TLS on this port"
        protocol = "http"
        carried = carried_service(response) if response.status_line else None
        if carried is not None:
            # the reply itself names the service carried: an origin-form request gets an
            # error from a proxy or an IPP server, and that error is the evidence
            protocol, why = carried
            extra["carrier"] = "http"
            extra["carried"] = why
            confidence = max(confidence, CARRIED_CONFIDENCE)
        verdict = Verdict(protocol, product, version, extra, confidence,
                          escape_evidence(data[:response.header_end if response.complete_headers
                                               else 200]))
        if carried is not None:
            verdict.reason = f"HTTP response parsed; it carries {protocol}: {carried[1]}"
        return verdict

    def _h2_verdict(self, data: bytes) -> Verdict:
        return Verdict("http", None, None, {"http2": "prior knowledge (h2c)",
                                            "note": "answered HTTP/1.1 with HTTP/2 frames"},
                       0.85, escape_evidence(data[:64]))


@register
class H2CProbe(Probe):
    """HTTP/2 with prior knowledge in clear text: send the preface and an empty SETTINGS."""

    name = "h2c"
    transport = "tcp"
    ports = frozenset()
    services = frozenset()
    rarity = 70
    read_budget = 4096

    def start(self) -> Step:
        return Send(H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

    def feed(self, data: bytes) -> Step:
        if len(data) < 9:
            return Wait() if not is_prefix(data, b"HTTP/") or len(data) < 5 else NoMatch(
                "HTTP/1 server")
        if not looks_like_h2(data) or data[3] != H2_SETTINGS:
            return NoMatch("no HTTP/2 SETTINGS frame")
        settings = {}
        length = int.from_bytes(data[:3], "big")
        body = data[9:9 + length]
        names = {1: "header_table_size", 2: "enable_push", 3: "max_concurrent_streams",
                 4: "initial_window_size", 5: "max_frame_size", 6: "max_header_list_size"}
        for pos in range(0, len(body) - 5, 6):
            ident, value = struct.unpack(">HI", body[pos:pos + 6])
            settings[names.get(ident, str(ident))] = value
        return Verdict("http", None, None, {"http2": "prior knowledge (h2c)",
                                            "h2_settings": settings}, 0.95,
                       escape_evidence(data[:64]))

    def finish(self, data: bytes) -> Step:
        step = self.feed(data)
        return step if isinstance(step, Verdict) else NoMatch("no HTTP/2 answer")
