"""The layers, enforced (docs/architecture.md): each package imports only what lies below it.

Statically, every import statement of every module (module level and inside functions) is
read with `ast`; at run time, a fresh interpreter imports a package and the test looks at
what `sys.modules` then holds, which also catches what a permitted import drags in.

- `contract` imports none of `service`, `clients`, `model_store`;
- `clients` (the SDK) imports neither `service` nor `model_store`;
- `model_store` imports neither `service` nor `clients`;
- `service` never imports `clients`, and its protocol adapters (REST, OIP REST, OIP gRPC) are
  siblings: none imports another (what they share is `service.http_common`, the converters
  `service.oip_codec` and the data plane);
- `service/core` imports no web or RPC framework (bentoml, grpc, starlette, fastapi, uvicorn,
  httpx) and no torch or torchvision; pydantic only where it types the configuration; torch
  only inside functions of the two modules that run it on purpose (`gpu_decode`, the nvJPEG
  path, and `backends`, the PyTorch backend).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("bentoml", "_bentoml_impl", "_bentoml_sdk", "grpc", "grpc_health",
              "grpc_reflection", "starlette", "fastapi", "uvicorn", "httpx")
TORCH = ("torch", "torchvision", "timm")
# The core's modules that may use pydantic (they type the configuration, not the wire).
CORE_PYDANTIC = {"service/core/config.py", "service/core/admission.py"}
# The core's modules that may import torch, inside a function only.
CORE_LAZY_TORCH = {"service/core/gpu_decode.py", "service/core/backends.py"}


@dataclass(frozen=True)
class Import:
    module: str  # the top-level name imported from
    full: str
    line: int
    at_module_level: bool


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[Import] = []

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            nested = depth + isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend(Import(a.name.split(".")[0], a.name, child.lineno, depth == 0)
                             for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # `from a.b import c` may import the module a.b.c: both are recorded.
                found.extend(Import(child.module.split(".")[0], full, child.lineno, depth == 0)
                             for full in (child.module, *(f"{child.module}.{a.name}"
                                                          for a in child.names)))
            elif isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only: nothing is imported when the module runs
            visit(child, nested)

    visit(tree, 0)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "_proto" not in p.parts)


def offences(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{imp.line} imports {imp.full}"
            for path in modules(package) for imp in imports_of(path)
            if imp.module in forbidden]


@pytest.mark.parametrize("package, forbidden", [
    ("contract", ("service", "clients", "model_store")),
    ("clients", ("service", "model_store")),
    ("model_store", ("service", "clients")),
    ("service", ("clients",)),
    ("service/core", FRAMEWORKS),
])
def test_a_package_imports_nothing_above_it(package, forbidden):
    assert offences(package, forbidden) == []


ADAPTERS = {"rest": ("service.rest", "service.rest_requests"),
            "oip_rest": ("service.oip_rest",), "grpc": ("service.grpc",)}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_protocol_adapters_do_not_import_one_another(adapter):
    paths = [p for p in modules("service") if _module_name(p).startswith(ADAPTERS[adapter])]
    assert paths
    others = tuple(name for other, names in ADAPTERS.items() if other != adapter
                   for name in names)
    assert [f"{p.relative_to(ROOT)}:{imp.line} imports {imp.full}" for p in paths
            for imp in imports_of(p) if imp.full.startswith(others)] == []


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_the_core_imports_pydantic_only_for_its_configuration():
    using = {str(path.relative_to(ROOT)) for path in modules("service/core")
             for imp in imports_of(path) if imp.module == "pydantic"}
    assert using <= CORE_PYDANTIC


def test_the_core_imports_torch_only_lazily_where_it_runs_torch():
    found = [(str(path.relative_to(ROOT)), imp) for path in modules("service/core")
             for imp in imports_of(path) if imp.module in TORCH]
    assert found, "the GPU decode path and the PyTorch backend import torch"
    for path, imp in found:
        assert path in CORE_LAZY_TORCH, f"{path}:{imp.line} imports {imp.full}"
        assert not imp.at_module_level, f"{path}:{imp.line} imports {imp.full} at import"


def test_the_ast_reader_sees_nested_imports_and_skips_type_checking_blocks(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    import torch\n\ndef f():\n    import grpc\n")
    found = {(imp.full, imp.at_module_level) for imp in imports_of(path)}
    assert found == {("os", True), ("typing", True), ("typing.TYPE_CHECKING", True),
                     ("grpc", False)}


def loaded_after_import(module: str) -> set[str]:
    """The top-level packages in sys.modules after a fresh interpreter imports `module`."""
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module, forbidden", [
    ("contract.oip", ("service", "clients", "model_store")),
    ("clients", ("service", "model_store", *TORCH)),
    ("model_store.registry", ("service", "clients", *TORCH)),
    ("service.core.dataplane", (*FRAMEWORKS, *TORCH, "clients")),
])
def test_importing_a_layer_loads_nothing_above_it(module, forbidden):
    assert loaded_after_import(module) & set(forbidden) == set()
