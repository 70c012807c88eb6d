# The operator image.
#
#   docker build -t oauth2-token-operator:0.1.0 .          # python:3.12-slim
#   make image                                             # falls back to a Debian-made base
#
# PYTHON_IMAGE is any image with python3 (>= 3.11) and its venv module at the same path
# in both stages: the official slim image by default; deploy/image/base.sh makes one from
# Debian packages where no registry answers. Plain `docker build` (no BuildKit needed).
ARG PYTHON_IMAGE=python:3.12-slim

# Stage one: build the wheel and install it, with its dependencies, into a venv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python3 -m venv /opt/oauth2-token-operator \
 && /opt/oauth2-token-operator/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/oauth2-token-operator/bin/pip install /wheels/*.whl \
 && /opt/oauth2-token-operator/bin/pip uninstall --yes pip \
 && find /opt/oauth2-token-operator -name '*.dist-info' -path '*oauth2_token_operator*' -print

# Stage two: the venv only (compiled bytecode included); no compiler, wheel or pip cache.
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="oauth2-token-operator" \
      org.opencontainers.image.description="Kubernetes operator that keeps short-lived OAuth2 access tokens in Secrets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=build /opt/oauth2-token-operator /opt/oauth2-token-operator
# Read-only root file system: nothing writes bytecode at run time; logs go to stdout.
# Any uid works, with or without a passwd entry (the operator names itself by host name).
ENV PATH=/opt/oauth2-token-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["oauth2-token-operator", "run"]
