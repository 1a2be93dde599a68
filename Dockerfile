# Image of the Preuve services for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY ingest ingest
COPY experiments experiments
COPY analysis analysis
COPY protocols protocols
COPY tools tools
# Dependencies from the hash-pinned lock only (see `make lock`), then Preuve without deps.
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
 && pip install --no-cache-dir --no-deps --no-build-isolation .
# The services run as an unprivileged user that owns only the state directory (the
# volume of docker-compose.yml mounts there and keeps this owner).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/preuve --create-home preuve \
 && chmod 0700 /var/lib/preuve
USER preuve
ENV HOME=/var/lib/preuve
ENTRYPOINT []
