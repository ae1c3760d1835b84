# syntax=docker/dockerfile:1
# A stand-in for python:3.11-slim-bookworm on a machine that cannot pull images: Debian
# bookworm's own Python 3.11 on the locally built Debian base (deploy/local/images.sh). As in
# the official image, `python`, `python3` and `pip` are on PATH and `python -m venv` works.
ARG DEBIAN_IMAGE=localhost/spendpipe-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python-is-python3 \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
