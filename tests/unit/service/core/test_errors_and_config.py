"""Error tables and configuration loading."""

from __future__ import annotations

import pytest

from service.core import errors
from service.core.config import load_config, usable_cores


@pytest.mark.parametrize("error, http, grpc", [
    (errors.InvalidArgument("x"), 400, "INVALID_ARGUMENT"),
    (errors.InvalidImage("x"), 400, "INVALID_ARGUMENT"),
    (errors.ImageTooLarge("x"), 413, "INVALID_ARGUMENT"),
    (errors.ModelNotFound("x"), 404, "NOT_FOUND"),
    (errors.Overloaded("x"), 503, "RESOURCE_EXHAUSTED"),
    (errors.NotReady("x"), 503, "UNAVAILABLE"),
    (errors.NoVariantFits("x"), 422, "FAILED_PRECONDITION"),
    (errors.DeadlineExceeded("x"), 504, "DEADLINE_EXCEEDED"),
    (errors.RequestTimeout("x"), 408, "DEADLINE_EXCEEDED"),
    (errors.PayloadTooLarge("x"), 413, "RESOURCE_EXHAUSTED"),
])
def test_every_error_maps_to_one_status_per_protocol(error, http, grpc):
    assert errors.http_status(error) == http
    assert errors.grpc_status_name(error) == grpc
    body = error.to_dict()
    assert body["error"]["code"] == error.code and body["error"]["message"] == "x"


def test_config_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("default_model: lenet5\nbatching: {max_batch_size: 4}\n"
                    "per_model_batching: {lenet5: {max_delay_ms: 1}}\n")
    config = load_config(path)
    assert config.default_model == "lenet5"
    assert config.batching.max_batch_size == 4
    assert config.batching_for("lenet5").max_batch_size == 4  # inherits the global value
    assert config.batching_for("lenet5").max_delay_ms == 1


def test_instances_share_the_cores_unless_threads_are_set(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert usable_cores() == 8
    config = load_config(tmp_path / "none.yaml", batching={"instances": 2},
                         per_model_batching={"lenet5": {"instances": 3},
                                             "alexnet": {"instances": 16}})
    assert config.threads_for("efficientnet_lite0") == 4
    assert config.threads_for("lenet5") == 2  # 8 // 3
    assert config.threads_for("alexnet") == 1  # never fewer than one
    assert load_config(tmp_path / "none.yaml").threads_for("lenet5") == 8
    pinned = load_config(tmp_path / "none.yaml", threads=3, batching={"instances": 2})
    assert pinned.threads_for("lenet5") == 3


def test_unknown_config_key_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_batch: 3\n")
    with pytest.raises(ValueError, match="unknown configuration keys"):
        load_config(path)


def test_gpu_settings_load_and_nest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("device: cuda\nproviders: [cuda, cpu]\nprecision: fp16\nio_binding: false\n"
                    "tensorrt: {engine_cache: false, cache_dir: /var/cache/trt}\n"
                    "decode: gpu\ngpu_decode_min_pixels: 2000000\n")
    config = load_config(path)
    assert config.providers == ("cuda", "cpu") and config.precision == "fp16"
    assert config.io_binding is False and config.decode == "gpu"
    assert config.tensorrt.engine_cache is False and config.tensorrt.timing_cache is True
    assert config.tensorrt.cache_dir == "/var/cache/trt"
    assert config.gpu_decode_min_pixels == 2_000_000


@pytest.mark.parametrize("overrides, message", [
    ({"precision": "int8"}, "precision must be one of fp32, fp16"),
    ({"decode": "nvjpeg"}, "decode must be one of auto, cpu, gpu"),
    ({"providers": ["cuda", "rocm"]}, "providers\\[\\] must be one of"),
    ({"device": "gpu"}, "device must be one of auto, cpu, cuda"),
    ({"device": "cpu", "precision": "fp16"}, "fp16 runs on the CUDA and TensorRT providers"),
    ({"device": "cpu", "decode": "gpu"}, "decode: gpu needs a GPU"),
    ({"providers": "cuda"}, "providers must be a list"),
])
def test_gpu_settings_that_cannot_work_are_refused_at_load(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(tmp_path / "none.yaml", **overrides)


def test_client_messages_are_bounded_and_say_how_much_was_cut():
    # Issue 14: the errors of 10,000 inputs made a 90 KB gRPC status message.
    long = "unknown input(s) [" + ", ".join(f"'IN{i}'" for i in range(10_000)) + "]"
    shown = errors.client_message(long)
    assert len(shown.encode()) < errors.MAX_CLIENT_MESSAGE_BYTES + 40
    assert shown.startswith("unknown input(s) ['IN0', 'IN1'")
    cut = len(long.encode()) - len(shown.split("... (")[0].encode())
    assert shown.endswith(f"... ({cut} more bytes)")
    assert errors.client_message("short") == "short"


def test_client_messages_never_cut_a_character_or_keep_a_lone_surrogate():
    shown = errors.client_message("é" * 2000)
    shown.encode("utf-8")  # whole characters only
    assert errors.client_message("model \ud800") == "model \\ud800"


def test_error_bodies_bound_the_message_and_echoed_details():
    body = errors.ModelNotFound("unknown model " + "m" * 50_000, model="m" * 50_000,
                                valid_models=["a", "b"]).to_dict()["error"]
    assert len(body["message"]) < 1100 and len(body["model"]) < 1100
    assert body["valid_models"] == ["a", "b"]
    surrogate = errors.ModelNotFound("unknown model \ud800", model="\ud800").to_dict()
    import json

    json.dumps(surrogate, ensure_ascii=False).encode("utf-8")  # what JSONResponse does


def test_hostile_client_limits_have_defaults_and_derive_the_body_budget(tmp_path):
    config = load_config(tmp_path / "none.yaml")
    assert config.max_header_bytes == 64 * 1024 and config.header_timeout_s == 10.0
    # The body limit derives from the pixel limit (40 MB); four of them are under the floor.
    assert config.body_limit_bytes == config.max_image_pixels == 40_000_000
    assert config.body_bytes_in_flight == 256 * 2**20
    assert load_config(tmp_path / "none.yaml", max_body_bytes=200_000
                       ).body_bytes_in_flight == 256 * 2**20
    assert load_config(tmp_path / "none.yaml", max_body_bytes=128 * 2**20
                       ).body_bytes_in_flight == 512 * 2**20
    assert load_config(tmp_path / "none.yaml", max_body_bytes_in_flight=1000
                       ).body_bytes_in_flight == 1000
    assert config.model_load_timeout_s > 0 and config.model_load_concurrency >= 2


@pytest.mark.parametrize("content, cores", [("max 100000", None), ("200000 100000", 2),
                                            ("150000 100000", 2), ("50000 100000", 1),
                                            ("garbage", None)])
def test_a_cgroup_cpu_quota_bounds_the_usable_cores(tmp_path, content, cores):
    from service.core.config import cpu_quota_cores

    path = tmp_path / "cpu.max"
    path.write_text(content + "\n")
    assert cpu_quota_cores(path) == cores
    assert cpu_quota_cores(tmp_path / "missing") is None


def test_the_body_and_grpc_message_limits_derive_from_the_pixel_limit(tmp_path):
    config = load_config(tmp_path / "none.yaml", max_image_pixels=12_000_000)
    assert config.body_limit_bytes == 12_000_000
    assert config.grpc_message_limit_bytes == 12_000_000 + 2**20
    explicit = load_config(tmp_path / "none.yaml", max_body_bytes=5_000_000,
                           grpc_max_message_bytes=7_000_000)
    assert (explicit.body_limit_bytes, explicit.grpc_message_limit_bytes) == (5_000_000,
                                                                             7_000_000)
