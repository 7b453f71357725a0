# syntax=docker/dockerfile:1
# The gpucloud image: one image for every process (web, worker, beat, operator, migrations); the Helm chart
# (helm/gpucloud) picks the command. Build and push: docs/operations.md, "Container image".
ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: the dependencies, pinned by requirements/constraints.txt, in a virtualenv ----------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /build
COPY pyproject.toml ./
COPY requirements/constraints.txt requirements/constraints.txt
# Only the project's runtime dependencies (not the dev extra), so this layer changes with the lock alone.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/venv/bin/pip install -c requirements/constraints.txt -r requirements.txt

# ---- runtime ----------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production
# Pango and a font: WeasyPrint draws invoice PDFs with them (apps/billing/invoices/pdf.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 gpucloud \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin gpucloud
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY config config
COPY apps apps
COPY templates templates
COPY static static
# Static files are collected once, here, and served by whitenoise from the read-only image. The values
# below exist only for this command (never ENV, so nothing of them is left in the image): production
# settings refuse to load without them, and collectstatic reads none of them. It opens no database
# connection, signs nothing with the key, and names the files by the hashes of their contents.
RUN SECRET_KEY=collectstatic-at-build-time-only-not-a-secret-0000 \
    DATABASE_URL=postgres://build@127.0.0.1:1/unused \
    ALLOWED_HOSTS=build.invalid \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q config apps
# Code and static files stay root-owned: the process can read them, not change them.
USER 10001:10001
EXPOSE 8000
# Containers listen on the pod's address; the chart sets workers, threads and timeout per installation.
# Gunicorn's heartbeat files go to /tmp and its control socket (under $HOME, read-only here) is off; its own
# log goes through the JSON formatter and redaction filter (config/gunicorn.py).
CMD ["gunicorn", "config.wsgi:application", "--bind=0.0.0.0:8000", "--worker-tmp-dir=/tmp", \
     "--no-control-socket", "--config=python:config.gunicorn", "--workers=3"]
