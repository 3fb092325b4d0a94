# wiseflow-sync container image.
# Build: docker build -t registry.example.edu/wiseflow-sync:0.1.0 .  (deploy it by the digest the push prints)
# Runs as a numeric non-root user with a read-only root filesystem: the only writable paths are the
# SQLite volume (/data) and /tmp (an emptyDir in Kubernetes, --tmpfs /tmp with plain docker).
# Reproducible inputs: the base image by digest, every Python dependency from requirements.lock with its
# hashes (regenerate it with `make lock` when pyproject.toml's dependencies change).

# ---- build: the locked dependencies, then the package itself, into a self-contained venv ----
# python:3.11-slim, pinned by digest: a rebuild gets the same base, whatever the tag points at today.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Hash-checking mode: pip refuses any file whose hash is not in the lock, and any unpinned requirement.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
# The project itself, built with the locked setuptools (no build isolation, no index: nothing unhashed is
# fetched). Byte-compile here: at run time the root filesystem is read-only and cannot take .pyc files.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index . \
 && /opt/venv/bin/pip uninstall --yes setuptools wheel \
 && /opt/venv/bin/python -m compileall -q /opt/venv

# ---- runtime: the venv, no compiler, no sources, no pip cache, no tests ----
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS runtime
LABEL org.opencontainers.image.title="wiseflow-sync" \
      org.opencontainers.image.description="Integration service between an institution's systems and UNIwise WISEflow"
# WISEFLOW_SYNC_IMAGE: `simulate` and `demo` refuse to start here without --allow-in-image (the simulator
# accepts well-known demo credentials and must never answer next to the real service).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    WISEFLOW_SYNC_IMAGE=1 \
    SYNC_DATABASE=/data/wiseflow-sync.sqlite3
COPY --from=build /opt/venv /opt/venv
# 10001: a numeric uid/gid with no entry in the base image, so runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin app \
 && mkdir -p /data \
 && chown 10001:10001 /data
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080
# SIGTERM (docker stop, Kubernetes) makes the service stop accepting, drain, commit and flush spans.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wiseflow-sync"]
CMD ["run"]
