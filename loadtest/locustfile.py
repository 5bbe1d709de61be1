"""Realistic traffic for ConvZoo: REST users on a weighted endpoint mix, gRPC users via the SDK.

`RestUser` mostly classifies single images and now and then sends a batch, a multi-crop, an
ensemble or a selection request; `GrpcUser` classifies through the SDK's gRPC (Open Inference
Protocol) transport and reports each call to Locust itself. The images are real photos from
scikit-image: web-sized ones (160-1024 px, as JPEG, PNG and WebP) and, for `--camera-share`
of the requests, camera-sized JPEGs (`--camera-megapixels`, 3 and 12 MP by default, with
sensor-like grain so they are as large as a phone's: tools/photos.py), encoded once per
process at start-up, so encoding costs the load generator nothing during the run. Every
answer is checked (status 200 and predictions in the body): an endpoint that answers 404 is
a failure, never skipped. `make loadtest` runs it headless and `loadtest/slo.py` judges the
CSV it writes; loadtest/README.md has the options and the distributed (master + workers)
form.
"""

from __future__ import annotations

import base64
import random
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse

import gevent
from locust import FastHttpUser, User, between, events, stats, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from clients import ConvZooClient, RetryPolicy

# scikit-image's photos; camera is greyscale, so the server's grey-to-RGB path gets load too.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera")
# Longer side in pixels: a thumbnail, a web image, a photo, a downscaled phone upload.
LONG_SIDES = (160, 320, 640, 1024)
# Camera-sized JPEGs come from these photos (what a phone sends as it took it).
CAMERA_PHOTOS = ("chelsea", "coffee", "rocket")
FORMATS = (("JPEG", "image/jpeg", {"quality": 90}), ("PNG", "image/png", {}),
           ("WEBP", "image/webp", {"quality": 80}))
DEFAULT_GRPC_PORT = 3001


@dataclass(frozen=True)
class Photo:
    name: str
    content_type: str
    data: bytes

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


def camera_photos(megapixels: tuple[float, ...]) -> tuple[Photo, ...]:
    from tools.photos import camera_jpeg

    return tuple(Photo(f"{name}_{mp:g}mp.jpeg", "image/jpeg", camera_jpeg(name, mp))
                 for name in CAMERA_PHOTOS for mp in megapixels)


def encode_photos() -> tuple[Photo, ...]:
    """Every photo at every web size in every format."""
    from tools import photos as bundled

    photos = []
    for name in PHOTOS:
        for long_side in LONG_SIDES:
            image = bundled.at_longer_side(bundled.photo(name), long_side)
            for fmt, content_type, save_options in FORMATS:
                photos.append(Photo(f"{name}_{image.width}x{image.height}.{fmt.lower()}",
                                    content_type, bundled.encode(image, fmt, **save_options)))
    return tuple(photos)


_photos: tuple[Photo, ...] = ()
_camera_photos: tuple[Photo, ...] = ()


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Traffic:
    """What one user sends. Built when the user starts, from the options as they are then: a
    worker receives the master's options with its first spawn message, after start-up."""

    photos: tuple[Photo, ...]
    camera_photos: tuple[Photo, ...]
    camera_share: float
    models: tuple[str, ...]
    ensemble: str
    select_family: str
    select_budgets_ms: tuple[float, ...]

    @classmethod
    def from_options(cls, options: Namespace) -> Traffic:
        if not _photos:
            raise RuntimeError("no photos: they are encoded by Locust's init event, so run this "
                               "file with locust")
        return cls(_photos, _camera_photos, options.camera_share, _csv(options.models),
                   options.ensemble, options.select_family,
                   tuple(float(b) for b in _csv(options.select_budgets_ms)))

    def photo(self) -> Photo:
        if self.camera_photos and random.random() < self.camera_share:
            return random.choice(self.camera_photos)
        return random.choice(self.photos)

    def model(self) -> str | None:
        # Half the requests leave the model to the server's default, as most clients do.
        return random.choice(self.models) if self.models and random.random() < 0.5 else None


def grpc_target_for(host: str | None, explicit: str) -> str:
    """The gRPC target: --grpc-target, else the REST host's name on port 3001."""
    if explicit:
        return explicit
    hostname = urlparse(host or "").hostname
    if not hostname:
        raise ValueError("GrpcUser needs --host (http://HOST:PORT) or --grpc-target HOST:PORT")
    return f"{hostname}:{DEFAULT_GRPC_PORT}"


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    parser.add_argument("--grpc-target", env_var="LOCUST_GRPC_TARGET", default="",
                        help="HOST:PORT of ConvZoo's gRPC server (default: --host's name, port "
                             f"{DEFAULT_GRPC_PORT})")
    parser.add_argument("--grpc-users", type=int, env_var="LOCUST_GRPC_USERS", default=1,
                        help="how many of the users are GrpcUser (0: share users by weight)")
    parser.add_argument("--models", env_var="LOCUST_MODELS",
                        default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
                        help="comma-separated models named in half the classify requests")
    parser.add_argument("--ensemble", env_var="LOCUST_ENSEMBLE", default="lite-trio",
                        help="named ensemble (service/config.yaml) for /ensemble")
    parser.add_argument("--select-family", env_var="LOCUST_SELECT_FAMILY",
                        default="efficientnet_lite", help="family for /select")
    parser.add_argument("--camera-share", type=float, env_var="LOCUST_CAMERA_SHARE",
                        default=0.3, help="share of the images that are camera-sized JPEGs")
    parser.add_argument("--camera-megapixels", env_var="LOCUST_CAMERA_MEGAPIXELS",
                        default="3,12", help="comma-separated sizes of the camera photos (MP)")
    parser.add_argument("--select-budgets-ms", env_var="LOCUST_SELECT_BUDGETS_MS",
                        default="100,250,1000",
                        help="comma-separated latency budgets /select requests ask for")


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    global _photos, _camera_photos
    # The master shares users among workers, so it needs the fixed count too.
    GrpcUser.fixed_count = max(0, environment.parsed_options.grpc_users)
    if isinstance(environment.runner, MasterRunner):
        return  # the master sends no requests
    # The SDK's gRPC calls block; switched to gevent they yield to the other users instead of
    # stalling the whole process. It must happen before the first channel exists.
    import grpc.experimental.gevent

    grpc.experimental.gevent.init_gevent()
    # Encoded here, blocking: no user starts and a worker does not even announce itself to
    # the master before the photos exist. The event loop's clock stood still meanwhile; left
    # stale, it would end --run-time early by the seconds this took.
    _photos = encode_photos()
    options = environment.parsed_options
    megapixels = tuple(float(m) for m in _csv(options.camera_megapixels)) if options else ()
    _camera_photos = camera_photos(megapixels) if options and options.camera_share > 0 else ()
    gevent.get_hub().loop.update_now()


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    # Locust rewrites its --csv files once a second and not again at exit, so the last second
    # of requests, failures included, would be missing from what slo.py judges: the figures
    # are final now, so wait for one more pass of the writer.
    options = environment.parsed_options
    if options and options.csv_prefix and not isinstance(environment.runner, WorkerRunner):
        gevent.sleep(stats.CSV_STATS_INTERVAL_SEC + 0.25)


def check_answer(response: Any, key: str = "predictions") -> None:
    """Mark a caught response failed unless it is a 200 whose JSON has a non-empty `key`."""
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
        return
    try:
        body = response.json()
    except ValueError:
        response.failure("answer is not JSON")
        return
    if not body.get(key):
        response.failure(f"answer has no {key!r}: {str(body)[:200]}")


class RestUser(FastHttpUser):
    """A REST client: mostly single-image classification, sometimes the heavier endpoints."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.mix = Traffic.from_options(self.environment.parsed_options)

    def post_json(self, path: str, body: dict[str, Any], key: str = "predictions") -> None:
        with self.client.post(path, json=body, name=path, catch_response=True) as response:
            check_answer(response, key)

    @task(10)
    def classify(self) -> None:
        photo = self.mix.photo()
        options = {"top_k": 5, **({"model": m} if (m := self.mix.model()) else {})}
        if random.random() < 0.5:  # a raw image body, as `curl --data-binary` sends it
            with self.client.post(f"/classify?{urlencode(options)}", data=photo.data,
                                  headers={"content-type": photo.content_type},
                                  name="/classify", catch_response=True) as response:
                check_answer(response)
        else:  # base64 in JSON, as the SDK sends it
            self.post_json("/classify", {"image": photo.b64, **options})

    @task(2)
    def classify_batch(self) -> None:
        body: dict[str, Any] = {"top_k": 5, "images": [
            self.mix.photo().b64 for _ in range(random.randint(2, 8))]}
        if model := self.mix.model():
            body["model"] = model
        self.post_json("/classify_batch", body, key="results")

    @task(1)
    def multicrop(self) -> None:
        self.post_json("/multicrop", {"image": self.mix.photo().b64,
                                      "crops": random.choice((5, 10)), "top_k": 5})

    @task(1)
    def ensemble(self) -> None:
        self.post_json("/ensemble", {"image": self.mix.photo().b64,
                                     "ensemble": self.mix.ensemble, "top_k": 5})

    @task(2)
    def select(self) -> None:
        body = {"image": self.mix.photo().b64, "family": self.mix.select_family, "top_k": 5,
                "latency_budget_ms": random.choice(self.mix.select_budgets_ms)}
        with self.client.post("/select", json=body, name="/select",
                              catch_response=True) as response:
            if response.status_code == 422 and '"no_variant_fits"' in (response.text or ""):
                # The documented answer to a budget nothing meets now: correct, not a
                # failure, and counted apart so that the figures show how often it happens.
                response.request_meta["name"] = "/select (no variant fits)"
                response.success()
            else:
                check_answer(response)


class GrpcUser(User):
    """A gRPC client through the SDK (`ConvZooClient(target, transport="grpc")`)."""

    fixed_count = 1  # set from --grpc-users at init
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.mix = Traffic.from_options(options)
        # No retries: a retried overload would hide from the figures what a client felt.
        self.sdk = ConvZooClient(grpc_target_for(self.host, options.grpc_target),
                                 transport="grpc", retry=RetryPolicy(max_attempts=1), timeout=30)

    def on_stop(self) -> None:
        self.sdk.close()

    def call(self, name: str, send: Callable[[], Any], check: Callable[[Any], str | None]
             ) -> None:
        """Time one SDK call and report it as a Locust request, failed on any exception or
        on a message from `check`."""
        start = time.perf_counter()
        error: Exception | None = None
        try:
            problem = check(send())
            if problem:
                error = AssertionError(problem)
        except Exception as exc:  # every failure is a reported request, not a dead user
            error = exc
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - start) * 1000,
            response_length=0, exception=error, context={})

    @task(5)
    def classify(self) -> None:
        image, model = self.mix.photo().data, self.mix.model()
        self.call("ModelInfer classify",
                  lambda: self.sdk.classify(image, model=model, top_k=5),
                  lambda result: None if result.predictions else "no predictions")

    @task(1)
    def classify_batch(self) -> None:
        images = [self.mix.photo().data for _ in range(random.randint(2, 8))]
        model = self.mix.model()
        self.call("ModelInfer classify_batch",
                  lambda: self.sdk.classify_batch(images, model=model, top_k=5),
                  lambda results: None if len(results) == len(images) and all(
                      r.predictions for r in results) else f"{len(results)} results for "
                                                           f"{len(images)} images")
