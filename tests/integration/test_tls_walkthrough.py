"""docs/reliability.md's TLS walkthrough on localhost (issue 18): the certificate its `openssl`
command makes covers `localhost` and `127.0.0.1`, the server's log names each listener with
its scheme and port, and the CLI's `--ca` verifies the server with that certificate, over
REST and gRPC, where `--tls` alone refuses it. A plain server's log says http:// and no TLS.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess

import pytest

from clients.cli import main as cli
from tests.integration.conftest import ROOT, LiveServer, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENTOML_LINE = ('Starting production {scheme} BentoServer from "service.service:ConvZoo" '
                "listening on {url} ")
GRPC_LINE = "gRPC (Open Inference Protocol, health, reflection) listening on [::]:{port}"


def documented_openssl_command() -> str:
    """The `openssl req ...` command of docs/reliability.md's TLS section, as written."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    tls = text[text.index("\n## TLS\n"):]
    block = re.search(r"```sh\n(openssl req .*?)\n```", tls, re.S)
    assert block, "docs/reliability.md's TLS section lost its openssl command"
    return block.group(1)


@pytest.fixture(scope="module")
def documented_certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command the walkthrough uses")
    folder = tmp_path_factory.mktemp("walkthrough")
    subprocess.run(["bash", "-c", documented_openssl_command()], cwd=folder, check=True,
                   capture_output=True, timeout=60)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, documented_certificate):
    cert, key = documented_certificate
    server = start_server(tmp_path_factory.mktemp("tls-server"), {
        "default_model": "lenet5", "startup_models": ["lenet5"],
        "grpc_tls_cert": str(cert), "grpc_tls_key": str(key),
    }, extra_args=("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)), scheme="https")
    yield server
    stop_server(server)


def port(target: str) -> str:
    return target.rpartition(":")[2]


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli(list(args), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_the_documented_certificate_names_localhost_and_its_address(documented_certificate):
    cert, _ = documented_certificate
    names = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext",
                            "subjectAltName"], check=True, capture_output=True, text=True,
                           timeout=30).stdout
    assert "DNS:localhost" in names and "IP Address:127.0.0.1" in names


def test_an_https_server_logs_https_and_its_grpc_listener_with_tls(tls_server: LiveServer):
    log = tls_server.log_path.read_text()
    assert BENTOML_LINE.format(scheme="HTTPS", url=tls_server.http_url) in log
    assert "listening on http://" not in log
    assert GRPC_LINE.format(port=port(tls_server.grpc_target)) + " with TLS" in log


def test_a_plain_server_logs_http_and_its_grpc_listener_without_tls(server: LiveServer):
    log = server.log_path.read_text()
    assert BENTOML_LINE.format(scheme="HTTP", url=server.http_url) in log
    grpc_line = GRPC_LINE.format(port=port(server.grpc_target))
    assert re.search(re.escape(grpc_line) + r"\n", log), log


def test_the_cli_verifies_the_server_with_ca_over_rest_and_grpc(tls_server, documented_certificate,
                                                               digit_pngs, tmp_path):
    cert, _ = documented_certificate
    digit, label = digit_pngs[0]
    image = tmp_path / "digit.png"
    image.write_bytes(digit)
    rest = f"https://localhost:{port(tls_server.http_url)}"
    grpc = f"localhost:{port(tls_server.grpc_target)}"
    for transport in ([], ["--grpc"]):
        url = grpc if transport else rest
        status, out, err = run_cli("classify", str(image), "--model", "lenet5", "--url", url,
                                   "--ca", str(cert), *transport)
        assert status == 0, err
        assert out.splitlines()[0] == f"{image}: lenet5 (pretrained)"
        assert out.splitlines()[2].split()[1] == str(label)  # rank 1's index
        # The system's authorities do not know a self-signed certificate.
        status, out, err = run_cli("classify", str(image), "--url", url, "--tls", *transport)
        assert status == 1 and "certificate verify failed" in err.lower().replace("_", " ")

