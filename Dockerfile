# Image of the Preuve services for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY experiments experiments
COPY analysis analysis
COPY protocols protocols
COPY tools tools
RUN pip install --no-cache-dir .
ENTRYPOINT []
