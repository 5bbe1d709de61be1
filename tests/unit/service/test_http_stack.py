"""`bentoml serve` runs uvicorn with its automatic choices (BentoML 1.4 passes no `loop` or
`http` on Linux): with httptools and uvloop installed those are the C parser and event loop,
which cut the server's CPU per REST request by about a fifth here (docs/benchmarks.md)."""

from __future__ import annotations

import inspect

import uvicorn
from _bentoml_impl.worker import service as bentoml_worker
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def test_uvicorn_picks_httptools_and_uvloop():
    # httptools' protocol, or service.http_guard's subclass of it once the service installed it.
    config = uvicorn.Config(app=lambda scope, receive, send: None)
    config.load()
    assert issubclass(config.http_protocol_class, HttpToolsProtocol)
    assert config.get_loop_factory().__module__ == "uvloop"


def test_bentoml_worker_leaves_the_choice_to_uvicorn():
    source = inspect.getsource(bentoml_worker)
    assert "uvicorn.Config(" in source
    assert "http=" not in source
    # The one `loop` it sets is for Windows, where uvloop does not run.
    assert source.count('uvicorn_extra_options["loop"]') == 1
    windows_branch = source.split("if psutil.WINDOWS:", 1)[1].split("config = uvicorn", 1)[0]
    assert 'uvicorn_extra_options["loop"]' in windows_branch
