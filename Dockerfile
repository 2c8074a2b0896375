# bids-dl BIDS-App image: `docker run bids-dl BIDS_DIR OUTPUT_DIR participant|group [options]`.
#
#   docker build -t bids-dl .                                  # TensorFlow with CUDA (default)
#   docker build --build-arg TF_VARIANT=cpu -t bids-dl:cpu .   # CPU-only TensorFlow (smaller)
#
# The trained models are inside the package, so the image needs no network at run time. It
# runs as a non-root user and also under any `--user UID:GID` and `--read-only` (HOME and
# caches live in /tmp: give Docker `--tmpfs /tmp` with `--read-only`; podman does that itself).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG TF_VARIANT=gpu
ARG TF_VERSION=2.21.0
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="bids-dl" \
      org.opencontainers.image.description="BIDS-App: deep-learning brain extraction, lesion segmentation and contrast synthesis" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/bids-dl/bids-dl" \
      org.opencontainers.image.url="https://github.com/bids-dl/bids-dl" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bids-dl developers"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/bids-dl
RUN python3 -m venv "${VIRTUAL_ENV}"
ENV PATH="${VIRTUAL_ENV}/bin:${PATH}" \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first (a layer that survives code changes): the package metadata and its
# version file only. The GPU variant swaps the CPU TensorFlow build that the package asks for
# on x86-64 for the CUDA one of the same version.
COPY pyproject.toml setup.cfg README.md /src/
COPY bids_dl/__init__.py /src/bids_dl/__init__.py
RUN case "${TF_VARIANT}" in \
      cpu) pip install "/src" "tensorflow-cpu==${TF_VERSION}" ;; \
      gpu) pip install "/src" "tensorflow-cpu==${TF_VERSION}" \
           && pip uninstall -y tensorflow-cpu \
           && pip install "tensorflow[and-cuda]==${TF_VERSION}" ;; \
      *) echo "TF_VARIANT must be cpu or gpu, not ${TF_VARIANT}" >&2; exit 1 ;; \
    esac

# The package itself, with its trained models and templates.
COPY bids_dl /src/bids_dl
RUN pip install --no-deps --force-reinstall "/src" \
 && rm -rf /src \
 && python -c "from bids_dl.models.registry import get_entry, verify; verify(get_entry('brain-extraction'))"

RUN useradd --create-home --uid 1000 --shell /bin/bash bidsdl
ENV HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    KERAS_HOME=/tmp/.keras \
    KERAS_BACKEND=tensorflow \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NIPYPE_NO_ET=1 \
    BIDS_DL_CONTAINER="docker://bids-dl/bids-dl:${VERSION}"
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["bids-dl"]
