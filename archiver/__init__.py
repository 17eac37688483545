"""archiver: archive Restcomm call recordings to S3 or local disk, verified, crash-safe."""

__version__ = "0.1.0"
