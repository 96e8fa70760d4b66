# The Stalwart image: one build for the worker and Flower (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app
COPY . /app
# Installs the platform (package `stalwart` from platform/) with Celery, Flower, sentry-sdk and
# prometheus-client; workers/ and tasks/ are imported from /app via PYTHONPATH.
RUN pip install /app \
    && useradd --create-home --uid 10001 stalwart

USER stalwart
# The ops port: /healthz, /readyz, /metrics (set STALWART_OPS_PORT to the same number).
EXPOSE 9808
# Celery drains on SIGTERM: in-flight jobs finish, the rest go back to the queue.
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "workers.app", "worker", "--loglevel=INFO"]
