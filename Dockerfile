# syntax=docker/dockerfile:1
# archiver: archives call recordings from a Restcomm, Twilio or SignalWire account to local disk
# or S3. Building, tagging (the release version, never latest) and running: docs/deploying.md.
#
#   docker build -t archiver .
#   docker run -d --name archiver \
#     -v /srv/archiver/archiver.toml:/etc/archiver/archiver.toml:ro \
#     -v /srv/archiver/auth_token:/run/secrets/auth_token:ro \
#     -v archiver-state:/var/lib/archiver \
#     archiver
#
# The config (see config/archiver.example.toml) must set, for the health checks:
#   [server]
#   listen = "0.0.0.0:9108"     # the default 127.0.0.1 is unreachable from a kubelet or the host
# and take the token from a file, never from the image or an ENV line:
#   [source]
#   auth_token_file = "/run/secrets/auth_token"
# Ledger and local archive live in the volume /var/lib/archiver (the example config's defaults).
# Lint: scripts/check-deploy runs hadolint on this file.

# Both stages use the same image, so the venv built in the first works unchanged in the second.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY archiver ./archiver
# a regular (not editable) install; pip also byte-compiles, so nothing is written at run time
RUN /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="archiver" \
      org.opencontainers.image.description="Archives call recordings from Restcomm, Twilio and SignalWire accounts to local disk or S3, verified, with a crash-safe ledger" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# A fixed uid/gid, so volume ownership and Kubernetes' runAsUser/fsGroup can name it
RUN groupadd --system --gid 10001 archiver \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/archiver --shell /usr/sbin/nologin archiver \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/archiver \
    && install -d -m 0755 /etc/archiver

COPY --from=builder /opt/venv /opt/venv

# numeric, so runAsNonRoot can verify it without reading /etc/passwd
USER 10001:10001
WORKDIR /var/lib/archiver
VOLUME /var/lib/archiver
# /healthz (the loop is alive) and /readyz (ledger open, passes not failing), [server] listen
EXPOSE 9108

# The first SIGTERM drains in-flight transfers for [daemon] drain_timeout (default 30 s): stop
# with `docker stop -t 60` or more (Docker's default is 10 s). archiver handles SIGTERM itself
# and starts no child processes, so it is fine as PID 1 without an init.
STOPSIGNAL SIGTERM
# slim has no curl; urlopen raises (exit 1) on a refused connection, a timeout or a non-2xx
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]

ENTRYPOINT ["archiver"]
CMD ["--config", "/etc/archiver/archiver.toml", "run"]
