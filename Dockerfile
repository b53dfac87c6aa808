# Audience Hub daemon image.
#   docker build -t audience-hub .
#   docker run -d --name hub -v hub-data:/data -v "$PWD/config.yaml:/data/config.yaml:ro" \
#     --secret ... (or -e HUBSPOT_TOKEN=...) -p 127.0.0.1:9108:9108 audience-hub
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY segment_rules ./segment_rules
RUN pip install --no-cache-dir --prefix=/install '.[postgres]'

FROM python:3.11-slim
COPY --from=build /install /usr/local
# A fixed, unprivileged user; the data volume is the only place it writes.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin hub \
    && install -d -o hub -g hub /data
USER hub
WORKDIR /data
VOLUME ["/data"]
ENV HUB_CONFIG=/data/config.yaml \
    CREDENTIALS_DIRECTORY=/run/secrets \
    PYTHONUNBUFFERED=1
EXPOSE 9108
# /healthz answers 200 while the scheduler runs ("ok", or "degraded" with reasons when a source is paused or
# failing: `hub status` tells more) and 503 when it does not.
HEALTHCHECK --interval=60s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["hub"]
CMD ["run", "--http", "0.0.0.0:9108", "--log-format", "json"]
