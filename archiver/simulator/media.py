"""How a recording's bytes reach the client: from the API itself, or from an S3-like origin.

``direct`` streams the body with its Content-Length, ``proxy`` streams it chunked (a proxy in
front of the platform), ``redirect`` answers 307 (Twilio: 302) to a presigned URL on the
storage origin, which checks the signature, refuses a request carrying credentials and
answers with S3's error bodies. A platform that serves other renditions of a recording (an
mp3, a mono mix-down) names them with ``renditions``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web

from archiver.simulator.app import Reply, empty
from archiver.simulator.bodies import Body
from archiver.simulator.faults import FaultInjector
from archiver.simulator.store import RecordingStore, SimRecording

MEDIA_MODES = ("direct", "redirect", "proxy")
_STORAGE_PATH = re.compile(r"/storage/([^/]+)\.(wav|mp4|mp3)")
# the rendition of a recording in a format and a channel count, or None: there is none
Renditions = Callable[[SimRecording, str, int], Body | None]


class MediaHost:
    """Answers a request for a recording's media, and serves the storage origin."""

    def __init__(
        self,
        store: RecordingStore,
        injector: FaultInjector,
        mode: str,
        seed: int,
        *,
        redirect_status: int = 307,
        renditions: Renditions | None = None,
    ) -> None:
        if mode not in MEDIA_MODES:
            raise ValueError(f"unknown media_mode {mode!r}")
        self.store = store
        self.injector = injector
        self.mode = mode
        self.redirect_status = redirect_status
        self.renditions = renditions
        self.origin = ""  # the storage origin's http://host:port, once started
        self._sign_key = hashlib.sha256(f"storage:{seed}".encode()).digest()

    def answer(self, rec: SimRecording, body: Body | None = None) -> Reply:
        """The API's answer to a media GET for ``rec`` (or for ``body``, one rendition of it)."""
        if self.mode == "redirect":
            return empty(self.redirect_status, Location=self._presigned_url(rec, body))
        size = rec.size if body is None else body.size
        length = None if self.mode == "proxy" else size  # a proxy streams it chunked
        if body is None:
            return Reply(
                200, {"Content-Type": rec.content_type}, stream=rec.iter_body(), length=length
            )
        return Reply(200, {"Content-Type": body.content_type}, stream=body.iter(), length=length)

    def _presigned_url(self, rec: SimRecording, body: Body | None) -> str:
        name = f"{rec.sid}.{rec.ext if body is None else body.ext}"
        query = ""
        signed = name
        if body is not None:  # a rendition: the signature covers its channel count too
            query = f"channels={body.channels}&"
            signed = f"{name}:{body.channels}"
        return (
            f"{self.origin}/storage/{name}?{query}X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Expires=600&X-Amz-Signature={self._signature(signed)}"
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
        channels = request.query.get("channels")
        signed = f"{sid}.{ext}" if channels is None else f"{sid}.{ext}:{channels}"
        if not hmac.compare_digest(signature, self._signature(signed)):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature does not match")
        rec = self.store.recordings.get(sid)
        if rec is not None and rec.sid in self.injector.uploading:
            # S3 answers a missing key with 403 when the signer may not list the bucket
            return _s3_error(403, "AccessDenied", "Access Denied")
        missing = _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if rec is None:
            return missing
        if channels is not None and self.renditions is not None and channels.isdigit():
            body = self.renditions(rec, ext, int(channels))
            if body is None:
                return missing
            headers = {"Content-Type": body.content_type, "ETag": f'"{body.sha256()[:32]}"'}
            return Reply(200, headers, stream=body.iter(), length=body.size)
        if rec.ext != ext:
            return missing
        headers = {"Content-Type": rec.content_type, "ETag": f'"{rec.sha256()[:32]}"'}
        return Reply(200, headers, stream=rec.iter_body(), length=rec.size)


def _s3_error(status: int, code: str, message: str) -> Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{xml_escape(message)}</Message></Error>"
    )
    return Reply(status, {"Content-Type": "application/xml"}, body.encode())
