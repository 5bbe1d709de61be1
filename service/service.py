"""The BentoML service: one process hosting the inference core for REST and gRPC.

`bentoml serve service.service:ConvZoo --port 3000` starts it. The REST routes are the
Starlette app of `service.rest`, mounted here; BentoML adds /livez, /readyz (true once the
start-up models are loaded) and /metrics (BentoML's own plus ConvZoo's, appended).
"""

from __future__ import annotations

import logging

import bentoml

from service.core import metrics
from service.core.config import load_config
from service.core.inference import InferenceCore
from service.rest import create_app

log = logging.getLogger("convzoo")

rest_app = create_app()


@bentoml.service(name="convzoo", workers=1, traffic={"timeout": 300})
@bentoml.asgi_app(rest_app, path="/")
class ConvZoo:
    def __init__(self) -> None:
        self.core = InferenceCore(load_config())
        rest_app.state.core = self.core

    @bentoml.on_startup
    async def start(self) -> None:
        await self.core.start()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await self.core.close()

    async def __is_ready__(self) -> bool:
        return self.core.ready

    async def __metrics__(self, content: str) -> str:
        return content + metrics.exposition().decode()
