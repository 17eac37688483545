"""How a recording's bytes reach the client: from the API itself, or from an S3-like origin.

``direct`` streams the body with its Content-Length, ``proxy`` streams it chunked (a proxy in
front of the platform), ``redirect`` answers 307 to a presigned URL on the storage origin,
which checks the signature and answers with S3's error bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web

from archiver.simulator.app import Reply, empty
from archiver.simulator.faults import FaultInjector
from archiver.simulator.store import RecordingStore, SimRecording

MEDIA_MODES = ("direct", "redirect", "proxy")
_STORAGE_PATH = re.compile(r"/storage/([^/]+)\.(wav|mp4)")


class MediaHost:
    """Answers a request for a recording's media, and serves the storage origin."""

    def __init__(
        self, store: RecordingStore, injector: FaultInjector, mode: str, seed: int
    ) -> None:
        if mode not in MEDIA_MODES:
            raise ValueError(f"unknown media_mode {mode!r}")
        self.store = store
        self.injector = injector
        self.mode = mode
        self.origin = ""  # the storage origin's http://host:port, once started
        self._sign_key = hashlib.sha256(f"storage:{seed}".encode()).digest()

    def answer(self, rec: SimRecording) -> Reply:
        """The API's answer to a media GET for ``rec``."""
        if self.mode == "redirect":
            return empty(307, Location=self._presigned_url(rec))
        length = None if self.mode == "proxy" else rec.size  # a proxy streams it chunked
        headers = {"Content-Type": rec.content_type}
        return Reply(200, headers, stream=rec.iter_body(), length=length)

    def _presigned_url(self, rec: SimRecording) -> str:
        name = f"{rec.sid}.{rec.ext}"
        return (
            f"{self.origin}/storage/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Expires=600&X-Amz-Signature={self._signature(name)}"
        )

    def _signature(self, name: str) -> str:
        return hmac.new(self._sign_key, name.encode(), hashlib.sha256).hexdigest()

    async def storage_route(self, request: web.Request, authorized: bool) -> Reply:
        """The storage origin: GET/HEAD of a presigned ``/storage/{sid}.{ext}``."""
        match = _STORAGE_PATH.fullmatch(request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return _s3_error(404 if match is None else 405, "NoSuchKey", "Not found")
        sid, ext = match.groups()
        if "Authorization" in request.headers:
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the "
                "X-Amz-Algorithm query parameter, Signature query string parameter or the "
                "Authorization header should be specified",
            )
        signature = request.query.get("X-Amz-Signature", "")
        if not hmac.compare_digest(signature, self._signature(f"{sid}.{ext}")):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature does not match")
        rec = self.store.recordings.get(sid)
        if rec is not None and rec.sid in self.injector.uploading:
            # S3 answers a missing key with 403 when the signer may not list the bucket
            return _s3_error(403, "AccessDenied", "Access Denied")
        if rec is None or rec.ext != ext:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        headers = {"Content-Type": rec.content_type, "ETag": f'"{rec.sha256()[:32]}"'}
        return Reply(200, headers, stream=rec.iter_body(), length=rec.size)


def _s3_error(status: int, code: str, message: str) -> Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{xml_escape(message)}</Message></Error>"
    )
    return Reply(status, {"Content-Type": "application/xml"}, body.encode())
