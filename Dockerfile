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
ENTRYPOINT []
