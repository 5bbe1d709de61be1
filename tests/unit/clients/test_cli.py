"""The CLI's TLS options without a server: `--ca` becomes REST's verify context or gRPC's root
certificates and implies TLS, TLS without a URL means https://, and an unreadable CA file is
a usage error naming it. Against a real TLS server: tests/integration/test_tls_walkthrough.py.
"""

from __future__ import annotations

import io
import ssl

import pytest

from clients.cli import main, parser, tls_options
from clients.client import rest_url
from tests.fixtures.tls import self_signed_certificate


def options(*argv: str) -> dict:
    return tls_options(parser().parse_args(["classify", "cat.jpg", *argv]))


def test_ca_verifies_rest_with_a_context_and_grpc_with_its_roots(tmp_path):
    cert, _ = self_signed_certificate(tmp_path)
    rest = options("--ca", str(cert))
    assert rest["tls"] is True and isinstance(rest["verify"], ssl.SSLContext)
    assert rest["verify"].verify_mode == ssl.CERT_REQUIRED and rest["verify"].check_hostname
    assert [c["subject"] for c in rest["verify"].get_ca_certs()] == [((("commonName",
                                                                        "localhost"),),)]
    assert options("--ca", str(cert), "--grpc") == {"tls": True,
                                                    "root_certificates": cert.read_bytes()}
    assert options("--tls") == {"tls": True} and options() == {"tls": False}


def test_tls_without_a_url_is_the_default_server_over_https():
    assert rest_url(None, True) == "https://localhost:3000"
    assert rest_url(None, False) == "http://localhost:3000"


@pytest.mark.parametrize("transport", [[], ["--grpc"]])
def test_an_unreadable_ca_file_is_a_usage_error_naming_it(tmp_path, transport):
    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG")
    err = io.StringIO()
    status = main(["classify", str(image), "--ca", str(tmp_path / "missing.pem"), *transport],
                  out=io.StringIO(), err=err)
    assert status == 2 and "missing.pem" in err.getvalue()
