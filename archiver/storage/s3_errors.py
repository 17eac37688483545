"""S3 errors as ours: :func:`boundary`, the one place botocore, aiobotocore and aiohttp errors
are translated (missing key → ObjectNotFound; throttling, 5xx, timeouts, a body corrupted on
the way → StorageUnavailable; denied, missing bucket → StorageDenied; a refused checksum →
VerificationFailed), and :func:`error_code` to read the store's answer behind one of ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from archiver.errors import (
    ObjectNotFound,
    StorageDenied,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)

_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchVersion"}
_DENIED = {
    "AccessDenied",
    "Forbidden",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
    "RequestTimeTooSkewed",
    "NoSuchBucket",
    "InvalidBucketName",
    "PermanentRedirect",
}
_MISMATCH = {"InvalidDigest", "InvalidChecksum"}
# the body arrived but did not match the checksum sent with it: corrupted on the way, so
# sending it again (from our spool or buffer, which the checksum was computed over) can work
_CORRUPTED = {"BadDigest", "XAmzContentSHA256Mismatch"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "NoSuchUpload",  # our upload was aborted under us (e.g. by a restarting instance): redo it
    "ConditionalRequestConflict",  # a concurrent conditional write to the key (AWS, 409)
}


def from_client_error(exc: ClientError, what: str) -> StorageError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    detail = f"{what}: {code or status} {error.get('Message', '')}".rstrip()
    if code == "NoSuchBucket":
        return StorageDenied(f"{detail} (the bucket does not exist; check archive.bucket)")
    if code in _NOT_FOUND or (status == 404 and not code):
        return ObjectNotFound(detail)
    if code in _DENIED or status == 403:
        return StorageDenied(f"{detail} (check the credentials and the bucket policy)")
    if code in _MISMATCH:
        return VerificationFailed(f"{detail} (the store refused the body: checksum mismatch)")
    if code in _CORRUPTED:
        return StorageUnavailable(
            f"{detail} (the store refused the body: it did not match its checksum, so it was "
            "corrupted on the way; sent again)"
        )
    if code in _TRANSIENT or status >= 500 or status == 429:
        return StorageUnavailable(detail)
    return StorageError(detail)


def refused_existing(exc: StorageError) -> bool:
    """A conditional write (``If-None-Match: *``) refused because the key already exists."""
    code, status = error_code(exc)
    return code == "PreconditionFailed" or status == 412


@contextlib.contextmanager
def boundary(what: str) -> Iterator[None]:
    """Translate botocore, aiobotocore and aiohttp errors into our own, naming ``what``."""
    try:
        yield
    except ClientError as exc:
        raise from_client_error(exc, what) from exc
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        raise StorageDenied(f"{what}: no usable AWS credentials ({exc})") from exc
    except (FlexibleChecksumError, ChecksumError) as exc:
        raise VerificationFailed(f"{what}: checksum mismatch ({exc})") from exc
    except (
        HTTPClientError,
        BotoConnectionError,
        IncompleteReadError,
        aiohttp.ClientError,
        TimeoutError,
        ConnectionError,  # the builtin: a reset socket that no layer wrapped
    ) as exc:
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {exc}") from exc


def error_code(exc: StorageError) -> tuple[str, int | None]:
    """The S3 error code and HTTP status behind ``exc`` (("", None) when it was no answer)."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return "", None
    code = str(cause.response.get("Error", {}).get("Code", ""))
    status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status
