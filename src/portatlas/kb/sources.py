"""Reading a registry source (file or URL) and recognising its format."""

from __future__ import annotations

import hashlib
import io
import os

from portatlas.errors import DataError, NetworkError, UsageError
from portatlas.kb.records import Registry
from portatlas.model import Person
from portatlas.io_limits import is_stdin, read_limited
from portatlas.kb.iana_xml import parse_registry_xml
from portatlas.kb.iana_csv import parse_registry_csv
from portatlas.kb.etc_services import parse_services_file

MAX_SOURCE_BYTES = 64 << 20  # the real XML is ~4 MB; anything this big is not a registry
DOWNLOAD_TIMEOUT = 60.0


class Source:
    """The bytes of one registry source with where they came from."""

    def __init__(self, location: str, data: bytes) -> None:
        self.location = location
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()

    @property
    def format(self) -> str:
        head = self.data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"<"):
            return "xml"
        if head.startswith(b"Service Name,"):
            return "csv"
        return "services"


def read_source(location: str) -> Source:
    """Read a local path or download an http(s) URL, with size and time limits."""
    if location.startswith(("http://", "https://")):
        return Source(location, _download(location))
    if location.startswith("file://"):
        location = location[7:]

    data = read_limited(location, limit=MAX_SOURCE_BYTES, what="a registry file")
    return Source("standard input" if is_stdin(location) else os.path.abspath(location), data)


def _download(url: str) -> bytes:
    """The body of `url`, at most MAX_SOURCE_BYTES. A network failure (refused, unreachable,
    timed out, an HTTP error status) exits 4 like every network failure; a URL that cannot
    be a URL is a usage error; an answer too large is a data problem."""
    # lazy: urllib and http.client only when the source is a URL (a download)
    import http.client
    import urllib.error
    import urllib.request


    try:
        request = urllib.request.Request(url, headers={"User-Agent": "portatlas/0.1"})
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
            data = response.read(MAX_SOURCE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise NetworkError(f"{url}: download failed (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise NetworkError(f"{url}: download failed ({reason}); use --from PATH for a local "
                           "copy") from None
    except ValueError as exc:  # urllib's word for a malformed URL ('http://[::1/x')
        raise UsageError(f"{url[:200]!r} is not a usable URL ({exc})") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise DataError(f"{url}: response too large for a registry file")
    return data


def parse_source(source: Source, people: dict[str, Person] | None = None) -> Registry:
    """Parse a source in whichever of the three formats it is."""
    stream = io.BytesIO(source.data)
    fmt = source.format
    if fmt == "xml":
        return parse_registry_xml(stream, label=source.location)
    if fmt == "csv":
        return parse_registry_csv(stream, label=source.location, people=people)
    return parse_services_file(stream, label=source.location)
