"""/openapi.json describes what the studio answers: schemathesis runs against a real server.

Bounded: a fixed seed, at most 20 examples per operation and 45 s for the whole run, one worker,
on loopback. The server runs with a token, as every exposed studio does; the login limit is raised
so the fuzzer's wrong tokens at /api/login do not lock its client out of everything else.
Per-operation exceptions (rules JSON Schema cannot say) are in tests/schemathesis.toml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers.server import ROOT, StudioServer

TOKEN = "contract-test-token"


def _schemathesis() -> str:
    found = Path(sys.executable).with_name("schemathesis")
    return str(found) if found.exists() else (shutil.which("schemathesis") or "schemathesis")


def test_schemathesis_finds_no_contract_failure(tmp_path):
    env = {"STUDIO_TOKEN": TOKEN, "STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_LOGIN_MAX_FAILURES": "1000000"}
    with StudioServer(tmp_path, env) as srv:
        assert httpx.get(srv.url + "/openapi.json").status_code == 401  # the document needs the token too
        doc = httpx.get(srv.url + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        operations = sum(1 for item in doc["paths"].values() for m in item if m in ("get", "post", "delete", "patch"))
        run = subprocess.run(
            [
                _schemathesis(),
                "--no-color",
                "--config-file",
                str(ROOT / "tests" / "schemathesis.toml"),
                "run",
                srv.url + "/openapi.json",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "--max-examples",
                "20",
                "--max-time",
                "45",
                "--seed",
                "1",
                "--workers",
                "1",
                "--request-timeout",
                "20",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        log = srv.log()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    tested = re.search(r"Tested:\s+(\d+)", out)
    assert tested and int(tested.group(1)) == operations, out[-3000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", out)
    assert generated and int(generated.group(1)) > 100 and generated.group(1) == generated.group(2), out[-3000:]
    assert "Traceback" not in log, log[-4000:]


def test_errors_are_documented_as_the_studio_sends_them(tmp_path):
    from backend.app import create_app
    from backend.utils.config import Settings

    doc = create_app(Settings(data_dir=tmp_path / "data")).openapi()
    assert "HTTPValidationError" not in str(doc)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    jobs = doc["paths"]["/api/jobs/{job_id}"]
    assert jobs["get"]["responses"]["404"]["content"]["application/json"]["schema"] == error
    assert jobs["get"]["responses"]["422"]["content"]["application/json"]["schema"] == error
    assert {"400", "413", "415", "507"} <= set(doc["paths"]["/api/uploads"]["post"]["responses"])
    assert "multipart/form-data" in doc["paths"]["/api/uploads"]["post"]["requestBody"]["content"]
    assert {"404", "409"} <= set(doc["paths"]["/api/uploads/{upload_id}"]["delete"]["responses"])
    assert "409" in doc["paths"]["/api/jobs/{job_id}/retry"]["post"]["responses"]


def test_405_names_every_method_of_the_path(tmp_path):
    with StudioServer(tmp_path) as srv:
        r = httpx.request("OPTIONS", srv.url + "/api/jobs/0")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PATCH"
        r = httpx.put(srv.url + "/api/uploads/0")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET"
