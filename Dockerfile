# wiseflow-sync container image.
# Build: docker build -t wiseflow-sync:0.1.0 .
# Runs as a numeric non-root user with a read-only root filesystem: the only writable paths are the
# SQLite volume (/data) and /tmp (an emptyDir in Kubernetes, --tmpfs /tmp with plain docker).

# ---- build: install the package (not editable) and its dependencies into a self-contained venv ----
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# Byte-compile here: at run time the root filesystem is read-only and cannot take .pyc files.
RUN /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/python -m compileall -q /opt/venv

# ---- runtime: the venv, no compiler, no sources, no pip cache ----
FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="wiseflow-sync" \
      org.opencontainers.image.description="Integration service between an institution's systems and UNIwise WISEflow"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
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
