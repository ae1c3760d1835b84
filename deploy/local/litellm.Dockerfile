# syntax=docker/dockerfile:1
# A stand-in for the official LiteLLM proxy image (ghcr.io/berriai/litellm) on a machine that
# cannot pull it: LiteLLM from PyPI at the version services/gateway/Dockerfile pins, with the
# proxy's runtime dependencies from pyproject.toml's `proxy` extra (`litellm[proxy]` needs a
# package PyPI does not serve), installed into the system Python as the official image does.
# Its entrypoint is `litellm`, which the official image's entrypoint script also ends in.
# Build from the repository root (deploy/local/images.sh does).
ARG PYTHON_IMAGE=localhost/spendpipe-local/python:3.11-bookworm
FROM ${PYTHON_IMAGE}
ARG LITELLM_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
COPY pyproject.toml /tmp/spendpipe/pyproject.toml
RUN python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["proxy"]))' \
        /tmp/spendpipe/pyproject.toml >/tmp/spendpipe/proxy.txt \
    && python3 -m pip install "litellm==${LITELLM_VERSION:?}" -r /tmp/spendpipe/proxy.txt \
    && rm -rf /tmp/spendpipe
WORKDIR /app
EXPOSE 4000
ENTRYPOINT ["litellm"]
CMD ["--port", "4000"]
