"""`convzoo`'s dispatch, in-process: each subcommand reaches the CLI it stands for."""

from __future__ import annotations

import pytest

from tools import convzoo


def test_help_and_unknown_commands(capsys):
    assert convzoo.main(["--help"]) == 0
    assert "convzoo models ..." in capsys.readouterr().out
    assert convzoo.main([]) == 2
    assert convzoo.main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err


def test_models_is_the_model_store_cli(capsys):
    assert convzoo.main(["models", "urls", "resnet18"]) == 0
    assert capsys.readouterr().out == "https://download.pytorch.org/models/resnet18-f37072fd.pth\n"


def test_classify_is_the_client_cli(capsys, tmp_path):
    # A server that is not there: the client's own error, from the client's own code.
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG")
    status = convzoo.main(["classify", str(image), "--url", "http://127.0.0.1:9", "--json",
                           "--timeout", "2"])
    assert status in (1, 2) and "error:" in capsys.readouterr().err


def test_embed_is_the_client_clis_embed(capsys, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG")
    status = convzoo.main(["embed", str(image), "--url", "http://127.0.0.1:9", "--timeout", "2"])
    assert status in (1, 2) and "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's help: the embed subcommand's own options
        convzoo.main(["embed", "--help"])
    assert "--no-normalize" in capsys.readouterr().out


def test_serve_command_is_make_serves():
    command = convzoo.serve_command("0.0.0.0", 3000, ["--ssl-certfile", "c.pem"])
    assert command[-8:] == ["serve", "service.service:ConvZoo", "--host", "0.0.0.0", "--port",
                            "3000", "--ssl-certfile", "c.pem"]
