# syntax=docker/dockerfile:1
# The spendpipe services image: `spendpipe run aggregator|enforcer`, `spendpipe topics create`,
# `spendpipe budgets ...`. Build from the repository root: docker build -t spendpipe .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/spendpipe
WORKDIR /src
COPY pyproject.toml README.md ./
COPY spendpipe ./spendpipe
# the package and its runtime dependencies only: no dev extra
RUN /opt/spendpipe/bin/pip install .

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/spendpipe --create-home spendpipe
COPY --from=build /opt/spendpipe /opt/spendpipe
ENV PATH=/opt/spendpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    # LiteLLM's packaged price map: a container never fetches it at import
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    # /healthz, /readyz and /metrics must be reachable from outside the container
    SPENDPIPE_OPS__HOST=0.0.0.0 \
    SPENDPIPE_OPS__PORT=9464
WORKDIR /var/lib/spendpipe
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["spendpipe"]
CMD ["--help"]
