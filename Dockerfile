# The operator image.
#
#   docker build -t oauth2-token-operator:0.1.0 .          # python:3.12-slim, by digest
#   make image                                             # falls back to a Debian-made base
#
# PYTHON_IMAGE is any image with python3 (>= 3.11) and its venv module at the same path
# in both stages: the official slim image by default, pinned by the digest of its
# multi-platform index (renew it with `docker buildx imagetools inspect python:3.12-slim`);
# deploy/image/base.sh makes one from Debian packages where no registry answers, and
# records in it what it was made from. Plain `docker build` (no BuildKit needed).
ARG PYTHON_IMAGE=python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea

# Stage one: the venv, from locked files only (every one checked against its hash).
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/runtime.txt requirements/build.txt ./requirements/
# The runtime dependencies exactly as requirements/runtime.txt pins them (`make lock`),
# and, in a venv of its own, the build backend of requirements/build.txt.
RUN python3 -m venv /opt/oauth2-token-operator \
 && /opt/oauth2-token-operator/bin/pip install --require-hashes -r requirements/runtime.txt \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes -r requirements/build.txt
# The operator's wheel, built with that backend (nothing fetched), installed alone.
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/oauth2-token-operator/bin/pip install --no-deps /wheels/*.whl \
 && /opt/oauth2-token-operator/bin/pip check \
 && /opt/oauth2-token-operator/bin/pip uninstall --yes pip \
 && find /opt/oauth2-token-operator -name '*.dist-info' -path '*oauth2_token_operator*' -print

# Stage two: the venv only (compiled bytecode included); no compiler, wheel or pip cache.
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
# The base's image ID where PYTHON_IMAGE names no digest (deploy/image/build.sh sets it).
ARG BASE_DIGEST=""
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="oauth2-token-operator" \
      org.opencontainers.image.description="Kubernetes operator that keeps short-lived OAuth2 access tokens in Secrets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}"
COPY --from=build /opt/oauth2-token-operator /opt/oauth2-token-operator
COPY LICENSE /usr/share/doc/oauth2-token-operator/LICENSE
# Read-only root file system: nothing writes bytecode at run time; logs go to stdout.
# Any uid works, with or without a passwd entry (the operator names itself by host name).
ENV PATH=/opt/oauth2-token-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["oauth2-token-operator", "run"]
