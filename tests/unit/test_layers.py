"""The layers import downward only, and the web and job layers run without torch.

A module's layer is the folder it lives in under backend/ (docs/architecture.md): entry (the files of
backend/ itself) → web/ → jobs/ → pipeline/ → utils/ (media and system helpers). contracts/ (the
shared typed homes) sits beside the helpers: either may import the other, never both ways. The graph
is read from the source with `ast`, imports inside functions included: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers.server import ROOT

BACKEND = ROOT / "backend"

# Known edges that break the rules, each with the reason it is still there. Any other edge that
# breaks them fails the test.
ALLOWED: set[tuple[str, str]] = set()  # none today; an entry needs its reason beside it

WEB = "web"
JOBS = "jobs"
PIPELINE = "pipeline"
HELPERS = "helpers"
CONTRACTS = "contracts"
ENTRY = "entry"

# Which layers each layer may import (itself included).
MAY_IMPORT = {
    ENTRY: {ENTRY, WEB, JOBS, PIPELINE, HELPERS, CONTRACTS},
    WEB: {WEB, JOBS, PIPELINE, HELPERS, CONTRACTS},
    JOBS: {JOBS, PIPELINE, HELPERS, CONTRACTS},
    PIPELINE: {PIPELINE, HELPERS, CONTRACTS},
    # Helpers may raise or return a shared type (a domain error, say); the cycle test keeps the
    # contracts and the helpers they use from importing each other both ways.
    HELPERS: {HELPERS, CONTRACTS},
    CONTRACTS: {CONTRACTS, HELPERS},
}

# backend/'s first folder names a module's layer; a file directly in backend/ is the entry.
FOLDER_LAYERS = {"web": WEB, "jobs": JOBS, "pipeline": PIPELINE, "utils": HELPERS, "contracts": CONTRACTS}

# The web and job layers: imported with torch unimportable below.
TORCH_FREE_PACKAGES = ("backend.web", "backend.jobs")
TORCH_FREE_MODULES = ("backend.app",)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) <= 2 and (len(parts) == 1 or parts[1] not in FOLDER_LAYERS):
        return ENTRY  # backend, backend.__main__, backend.app
    try:
        return FOLDER_LAYERS[parts[1]]
    except KeyError:
        raise AssertionError(f"{module}: backend/{parts[1]}/ is no layer's folder") from None


def backend_modules() -> dict[str, Path]:
    found = {}
    for path in sorted(BACKEND.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Every backend module `module` imports, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from backend import config` imports the module backend.utils.config
            names = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known]
            names = names or [source]
        else:
            continue
        for name in names:
            # `import backend.pipeline.framepack.engine` depends on that module, not on the package only
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("backend") and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = backend_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        textwrap.dedent("""
        import backend.utils.config
        from backend.jobs import store as db
        from .sibling import thing
        def later():
            from backend.pipeline.framepack import loop
    """)
    )
    known = {
        "backend.utils.config",
        "backend.jobs.store",
        "backend.pipeline.framepack.loop",
        "backend.pipeline.framepack",
        "backend.pipeline",
        "backend.web.sibling",
        "backend.web",
        "backend",
    }
    assert imports_of("backend.web.probe", source, known) == {
        "backend.utils.config",
        "backend.jobs.store",
        "backend.web.sibling",
        "backend.pipeline.framepack.loop",
    }


def test_every_module_is_in_a_layer_its_folder_says():
    # A new folder under backend/ must be given a layer here (layer_of fails on it) before it counts.
    layers = {name: layer_of(name) for name in backend_modules()}
    assert layers["backend.app"] == ENTRY and layers["backend.__main__"] == ENTRY
    assert layers["backend.web.auth_middleware"] == WEB and layers["backend.web.routes.jobs"] == WEB
    assert layers["backend.jobs.queue"] == JOBS and layers["backend.jobs.analyzers.service"] == JOBS
    assert layers["backend.pipeline.framepack.loop"] == PIPELINE
    assert layers["backend.utils.progress"] == HELPERS and layers["backend.utils.config"] == HELPERS
    assert layers["backend.contracts.models"] == CONTRACTS
    roots = sorted(n for n, layer in layers.items() if layer == ENTRY)
    assert roots == ["backend", "backend.__main__", "backend.app"], roots


def test_layers_import_downward_only():
    broken = []
    for module, targets in import_graph().items():
        for target in targets:
            if layer_of(target) not in MAY_IMPORT[layer_of(module)] and (module, target) not in ALLOWED:
                broken.append(f"{module} ({layer_of(module)}) -> {target} ({layer_of(target)})")
    assert not broken, "imports against the layers:\n" + "\n".join(sorted(broken))


def test_the_allowed_exceptions_still_exist():
    # An exception that was fixed must leave the list, so it cannot hide a new edge later.
    graph = import_graph()
    assert [edge for edge in ALLOWED if edge[1] not in graph.get(edge[0], set())] == []


def test_no_import_cycles_between_modules():
    graph = import_graph()
    # A package's __init__ importing nothing of its own is the usual case; an edge from a module to
    # its own package (`from backend import x`) is an import of x, already resolved above.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


NO_TORCH = textwrap.dedent("""
    import importlib, json, pkgutil, sys, time

    class NoTorch:
        # torch, and everything that imports it, cannot be loaded in this process
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} is unimportable in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    packages, modules, data = json.loads(sys.argv[1])
    names = list(modules)
    for package in packages:
        pkg = importlib.import_module(package)
        names += [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    for name in names:
        importlib.import_module(name)

    from fastapi.testclient import TestClient
    from backend.app import create_app
    from backend.utils.config import Settings
    from tests.helpers.images import encoded, scene

    settings = Settings(data_dir=data, models_dir=data + "/models", device="cpu",
                        translate_service_url="127.0.0.1:9", _env_file=None)
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        health = client.get("/api/health")
        assert health.status_code == 200, health.text
        files = [("files", (f"{i}.png", encoded(scene(64, 64, shift=8 * i)), "image/png")) for i in range(2)]
        answer = client.post("/api/uploads", files=files)
        assert answer.status_code == 201, answer.text
        ids = [u["id"] for u in answer.json()["uploads"]]
        answer = client.post("/api/jobs", json={"images": ids, "engine": "morph",
                                               "prompt": "a slow turn",
                                               "settings": {"seconds": 0.5, "resolution": 64}})
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/api/jobs/{job_id}").json()["status"] not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, client.get(f"/api/jobs/{job_id}").text
            time.sleep(0.2)
        job = client.get(f"/api/jobs/{job_id}").json()
    print(json.dumps({"imported": names, "status": job["status"], "error": job.get("error"),
                      "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}))
""")


def test_web_and_job_layers_import_and_run_a_job_without_torch(tmp_path):
    args = json.dumps([TORCH_FREE_PACKAGES, TORCH_FREE_MODULES, str(tmp_path / "data")])
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "backend.web.routes.jobs" in result["imported"] and "backend.jobs.analyzers.service" in result["imported"]
    assert "backend.web.auth_middleware" in result["imported"] and "backend.web.routes.login" in result["imported"]
    assert result["torch"] == []
    # The whole path of a morph job (queue, runner, joiner, store, events) needs no torch either.
    assert (result["status"], result["error"]) == ("completed", None)


def test_no_two_modules_share_a_file_name():
    # `errors.py` beside `web/errors.py` once meant two things under one name; a name says one job.
    seen: dict[str, list[str]] = {}
    for path in BACKEND.rglob("*.py"):
        if path.name != "__init__.py":
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
