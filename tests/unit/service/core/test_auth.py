"""API-key checking: where a key may come from, open paths, key files, refusals."""

from __future__ import annotations

import pytest

from service.core.auth import ApiKeys, presented_key
from service.core.config import load_config
from service.core.errors import Unauthenticated, grpc_status_name, http_status

KEYS = ApiKeys.of(["k-alpha", "k-beta"], ("/livez", "/readyz", "/metrics", "/v2/health/*"))


@pytest.mark.parametrize("authorization, api_key, expected", [
    ("Bearer abc", None, "abc"),
    ("bearer  abc ", None, "abc"),
    ("BEARER abc", "other", "abc"),
    (None, "abc", "abc"),
    ("Basic dXNlcjpwYXNz", "abc", "abc"),  # not a bearer token: x-api-key counts
    ("Basic dXNlcjpwYXNz", None, None),
    ("Bearer ", None, None),
    (None, None, None),
])
def test_the_key_comes_from_a_bearer_token_or_x_api_key(authorization, api_key, expected):
    assert presented_key(authorization, api_key) == expected


def test_any_configured_key_is_accepted_either_way():
    KEYS.check("Bearer k-alpha", None)
    KEYS.check(None, "k-beta")


@pytest.mark.parametrize("authorization, api_key, message", [
    (None, None, "missing API key"),
    ("Bearer k-alph", None, "invalid API key"),
    ("Bearer k-alpha-and-more", None, "invalid API key"),
    (None, "K-ALPHA", "invalid API key"),
])
def test_a_missing_or_wrong_key_is_unauthenticated(authorization, api_key, message):
    with pytest.raises(Unauthenticated, match=message) as info:
        KEYS.check(authorization, api_key)
    assert http_status(info.value) == 401
    assert grpc_status_name(info.value) == "UNAUTHENTICATED"


def test_no_keys_means_authentication_is_off():
    keys = ApiKeys.from_config(load_config("/nonexistent.yaml"))
    assert not keys.enabled
    keys.check(None, None)


def test_open_paths_are_exact_unless_they_end_in_a_star():
    assert KEYS.is_open("/readyz") and KEYS.is_open("/v2/health/ready")
    assert not KEYS.is_open("/readyz/x") and not KEYS.is_open("/classify")


def test_keys_come_from_the_config_and_a_key_file(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated 2024-05\nk-file-1\n\n  k-file-2  \n")
    config_path = tmp_path / "convzoo.yaml"
    config_path.write_text(f"api_keys: [k-inline]\napi_keys_file: {key_file}\n"
                           "open_paths: [/livez]\n")
    keys = ApiKeys.from_config(load_config(config_path))
    for key in ("k-inline", "k-file-1", "k-file-2"):
        keys.check(f"Bearer {key}", None)
    assert keys.open_paths == ("/livez",)
    # /metrics is open by default (Prometheus carries no key); left out, it asks for one.
    assert not keys.is_open("/metrics") and ApiKeys.from_config(
        load_config(tmp_path / "none.yaml", api_keys=["k"])).is_open("/metrics")


def test_a_key_file_without_keys_is_an_error_not_auth_off(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="holds no key"):
        ApiKeys.from_config(load_config(tmp_path / "none.yaml", api_keys_file=str(key_file)))


@pytest.mark.parametrize("keys", [[""], ["  "], [None]])
def test_empty_keys_are_refused(keys):
    with pytest.raises(ValueError, match="non-empty"):
        ApiKeys.of(keys)


def test_a_string_where_a_key_list_belongs_is_a_config_error(tmp_path):
    config_path = tmp_path / "convzoo.yaml"
    config_path.write_text("api_keys: just-one-key\n")
    with pytest.raises(ValueError, match="api_keys must be a list"):
        load_config(config_path)
