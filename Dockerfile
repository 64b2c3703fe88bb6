# syntax=docker/dockerfile:1
# The mmrecipe user-code image. The gRPC code server, every run worker and every step pod run it
# (the Helm chart in helm/ deploys it; see helm/README.md).
#
#   docker build -t REGISTRY/mmrecipe:$(git rev-parse --short HEAD) .
#   # GPU nodes (ASR, eval): a CUDA build of the same torch version
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t REGISTRY/mmrecipe:TAG-gpu .
#
# The image runs as uid 10001 with a read-only root filesystem: everything it writes goes to /tmp
# (an emptyDir in the cluster). Models ship inside pip packages, so nothing is downloaded at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
# torch first, pinned, from the CPU (or CUDA) index: anything else would pull several GB of CUDA
# packages through a transitive dependency.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch==2.13.0
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY mmrecipe ./mmrecipe
COPY data_assets ./data_assets
COPY resources ./resources
COPY sensors ./sensors
COPY partitions ./partitions
COPY recipes ./recipes
# Non-editable: the code, the recipes and the package data stages read by default (eval sets, calibration
# speech, reference texts; see mmrecipe/data/PROVENANCE.md) install into the venv, the only thing shipped.
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --force-reinstall --no-deps fasttext-community==0.11.9 \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mmrecipe \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp/home --no-create-home --shell /usr/sbin/nologin mmrecipe \
    && mkdir -p /opt/dagster/dagster_home
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    HOME=/tmp/home \
    MPLCONFIGDIR=/tmp/home/matplotlib \
    MMRECIPE_HOME=/tmp/mmrecipe \
    MMRECIPE_TMP=/tmp/mmrecipe/tmp
WORKDIR /opt/dagster
USER 10001:10001
EXPOSE 3030
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "3030", \
     "--module-name", "data_assets.definitions", "--location-name", "mmrecipe"]
