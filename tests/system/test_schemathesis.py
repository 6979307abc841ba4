"""Property-based API tests of both gateways with schemathesis, against the running shop.

Each BFF's `/openapi.json` drives schemathesis (coverage and fuzzing phases) twice: as a
customer and as the administrator. Checked: no 5xx (`not_a_server_error`), and responses
conform to the documented schema, content type and headers. Not checked here (reported
separately): undocumented status codes (FastAPI lists only 2xx and 422) and rejected
schema-valid input (the schemas are looser than the validation behind them).

The four runs go concurrently, each bounded by `--max-time`, one worker each. The full
output of every run is kept in test-artifacts/schemathesis/. Each run picks a random seed
(printed in its output and in a failure); set ST_SEED to replay one.

`test_odd_path_parameters_are_not_server_errors` pins what schemathesis found so far, so
those answers are checked on every run whatever the seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.system.running import RunningShop

pytestmark = [pytest.mark.system, pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "schemathesis"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "response_schema_conformance",
        "content_type_conformance",
        "response_headers_conformance",
    ]
)
MAX_TIME_S = 40
MAX_EXAMPLES = 10
SEED = os.environ.get("ST_SEED") or str(random.randrange(1, 2**31))
RUNS = [(bff, role) for bff in ("web", "mobile") for role in ("customer", "admin")]


@dataclass(frozen=True)
class Run:
    bff: str
    role: str
    code: int
    output: str
    seconds: float
    path: Path

    def failures(self) -> str:
        """The FAILURES section of schemathesis' report (or the tail when there is none)."""
        text = self.output
        start = text.find("= FAILURES =")
        if start < 0:
            return "\n".join(text.splitlines()[-60:])
        end = text.find("= WARNINGS =", start)
        return text[text.rfind("\n", 0, start) + 1 : end if end > 0 else None]


def customer_token(shop: RunningShop) -> str:
    email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=shop.web_url, timeout=30) as web:
        r = web.post(
            "/api/auth/register",
            json={"email": email, "password": "correct horse battery", "name": "Fuzz"},
        )
        assert r.status_code == 201, r.text
        r = web.post("/api/auth/token", json={"email": email, "password": "correct horse battery"})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def schemathesis_runs(eventmart: RunningShop) -> Iterator[dict[tuple[str, str], Run]]:
    tokens = {"customer": customer_token(eventmart), "admin": eventmart.admin_token()}
    urls = {"web": eventmart.web_url, "mobile": eventmart.mobile_url}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    procs: dict[tuple[str, str], tuple[subprocess.Popen[bytes], Path]] = {}
    for bff, role in RUNS:
        path = ARTIFACTS / f"{bff}-{role}.txt"
        argv = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{urls[bff]}/openapi.json",
            "--header",
            f"Authorization: Bearer {tokens[role]}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(MAX_TIME_S),
            "--workers",
            "1",
            "--request-timeout",
            "15",
            "--seed",
            SEED,
            "--no-color",
        ]
        with path.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ARTIFACTS,
                env={**os.environ, "COLUMNS": "120"},
            )
        procs[(bff, role)] = (proc, path)
    runs: dict[tuple[str, str], Run] = {}
    try:
        for key, (proc, path) in procs.items():
            code = proc.wait(timeout=MAX_TIME_S * 4)
            runs[key] = Run(
                *key, code, path.read_text(errors="replace"), time.monotonic() - started, path
            )
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield runs


@pytest.mark.parametrize(("bff", "role"), RUNS, ids=[f"{b}-{r}" for b, r in RUNS])
def test_the_api_answers_without_5xx_and_as_documented(
    schemathesis_runs: dict[tuple[str, str], Run], bff: str, role: str
) -> None:
    run = schemathesis_runs[(bff, role)]
    assert "Operations:" in run.output, f"schemathesis did not load the schema:\n{run.output}"
    assert run.code == 0, (
        f"schemathesis found problems in the {bff} BFF as {role} "
        f"(seed {SEED}; full output in {run.path}):\n{run.failures()}"
    )


# Path parameters a browser or phone can send (percent-encoded) that are not plain ids:
# a control character, a "?" or "#" (they end the path when put back into a URL), "..".
ODD_IDS = ["%0A", "%1D", "abc%3Fq%3D1", "abc%23x", "%3F"]
ROUTES = [
    ("GET", "/api/products/{}"),
    ("GET", "/api/orders/{}"),
    ("GET", "/api/orders/{}/stream"),
    ("POST", "/api/orders/{}/cancel"),
    ("PUT", "/api/basket/items/{}"),
    ("DELETE", "/api/basket/items/{}"),
]


@pytest.mark.parametrize("bff", ["web", "mobile"])
def test_odd_path_parameters_are_not_server_errors(eventmart: RunningShop, bff: str) -> None:
    token = customer_token(eventmart)
    base = eventmart.web_url if bff == "web" else eventmart.mobile_url
    # A fresh connection each: after a 500 the gateway drops the kept-alive connection, and
    # the next request on it would fail with a reset (reported with the 500s).
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    errors = []
    with httpx.Client(base_url=base, timeout=30) as c:
        for method, route in ROUTES:
            for odd in ODD_IDS:
                path = route.format(odd)
                body = {"quantity": 1} if method == "PUT" else None
                r = c.request(method, path, json=body, headers=headers)
                if r.status_code >= 500:
                    errors.append(f"{method} {path} -> {r.status_code} {r.text[:80]}")
    assert not errors, "server errors:\n" + "\n".join(errors)
