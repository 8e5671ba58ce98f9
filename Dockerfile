# syntax=docker/dockerfile:1
# The TorchServe server image: Java 17, the pinned requirements.txt and model_store/nst.mar.
# Build the archive first, then the image (deploy/README.md, "Docker"):
#   make archive            # WEIGHTS=imagenet (default), imagenet-vgg16, hed, or a path to a VGG state dict
#   docker build -t nst-torchserve .
#   docker run --gpus all -p 8080:8080 -p 8082:8082 nst-torchserve
# .dockerignore sends only the four files copied below to the builder.
FROM python:3.11-slim-bookworm

# Java 17 for TorchServe's frontend; tini as PID 1 passes `docker stop`'s SIGTERM on to
# TorchServe's Python launcher and its Java child (-g: the whole process group).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
    && rm -rf /var/lib/apt/lists/*

# torch, torchvision, TorchServe and the rest at the versions the tests ran with. PyPI's Linux
# torch wheels carry their own CUDA libraries: the host needs only the NVIDIA driver and the
# container toolkit (`docker run --gpus all`).
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt

# An unprivileged user (uid 1000, numeric below so that Kubernetes' runAsNonRoot can check it)
# whose home is TorchServe's working directory: key_file.json and logs/ are written there. The
# configuration and the archive stay root's, read-only to the server.
RUN groupadd --gid 1000 model-server \
    && useradd --create-home --home-dir /home/model-server --uid 1000 --gid 1000 model-server
WORKDIR /home/model-server
COPY deploy/docker/config.properties /home/model-server/config.properties
COPY handler/metrics.yaml /home/model-server/metrics.yaml
COPY model_store/nst.mar /home/model-server/model-store/nst.mar
USER 1000:1000

# TorchServe counts GPUs with nvidia-smi, which the container toolkit mounts for "utility".
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LOG_LOCATION=/home/model-server/logs \
    METRICS_LOCATION=/home/model-server/logs

# Inference (token), management (token), metrics (no token).
EXPOSE 8080 8081 8082

# /ping with the current inference key: healthy once the worker has loaded the model.
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import json, urllib.request as u; key = json.load(open('/home/model-server/key_file.json'))['inference']['key']; u.urlopen(u.Request('http://127.0.0.1:8080/ping', headers={'Authorization': 'Bearer ' + key}), timeout=5)"]

ENTRYPOINT ["tini", "-g", "--"]
CMD ["torchserve", "--start", "--foreground", "--ts-config", "/home/model-server/config.properties", "--ncs"]
