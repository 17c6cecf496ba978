# zenml-scheduler in a container: the daemon under dumb-init (PID 1 forwards signals and reaps
# orphans), as a non-root user, with its state on a volume.
#   docker build -t zenml-scheduler .
#   docker run -v zs-state:/var/lib/zenml-scheduler -v $PWD/schedules.yaml:/app/schedules.yaml:ro \
#     -v $PWD/pipelines:/app/pipelines:ro zenml-scheduler
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY scheduler ./scheduler
# The daemon and the bundled example pipelines' libraries; no test tools.
RUN /opt/venv/bin/pip install --no-cache-dir ".[examples]" dumb-init==1.2.5.post1

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/zenml-scheduler zenml-scheduler
ENV PATH=/opt/venv/bin:$PATH \
    ZENML_SCHEDULER_STATE_DIR=/var/lib/zenml-scheduler/state \
    ZENML_CONFIG_PATH=/var/lib/zenml-scheduler/zenml \
    ZENML_ANALYTICS_OPT_IN=false \
    PYTHONUNBUFFERED=1
WORKDIR /app
COPY --chown=10001 schedules.yaml ./
COPY --chown=10001 pipelines ./pipelines
COPY --chown=10001 data/train.csv ./data/train.csv
COPY --chown=10001 data/samples ./data/samples
# The bundled watch job reads data/incoming and writes data/predictions (mount data/ to use yours).
RUN mkdir -p data/incoming data/predictions && chown 10001 data data/incoming data/predictions
USER 10001
VOLUME ["/var/lib/zenml-scheduler"]
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["zenml-scheduler", "health", "--config", "/app/schedules.yaml"]
# The HTTP API, when enabled (ZENML_SCHEDULER_API_ENABLED=true, ZENML_SCHEDULER_API_HOST=0.0.0.0).
EXPOSE 8765
STOPSIGNAL SIGTERM
ENTRYPOINT ["dumb-init", "--"]
CMD ["zenml-scheduler", "run", "--config", "/app/schedules.yaml", "--log-format", "json"]
