"""``python -m bench cloudflare`` runs end to end on tiny sizes, with the exact Cloudflare
requests of the model operations on each path (counted by the latency proxy, not by the
backends) and the API endpoints' requests held to their current ceilings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cloudflare.local_api import unavailable_reason
from tests.support import require_service

ROOT = Path(__file__).resolve().parents[2]

# Cloudflare requests per call, by path class. A save reads its project (the reference check)
# before it writes; on REST the KV write and the metadata row are one request each, through
# the gateway the write carries its row. A page with objects is the select, then (REST) one
# bulk read of its objects. A bulk create reads its projects, writes the objects (REST: one
# bulk write) and their rows (REST: one D1 batch).
MODEL_REQUESTS = {
    "rest": {
        "save": {"rest_kv": 2, "rest_d1": 1},
        "get": {"rest_kv": 1},
        "page": {"rest_d1": 1},
        "page_with_objects": {"rest_d1": 1, "rest_kv": 1},
        "bulk_create": {"rest_kv": 2, "rest_d1": 1},
    },
    "gateway": {
        "save": {"gateway": 2},
        "get": {"gateway": 1},
        "page": {"gateway": 1},
        "page_with_objects": {"gateway": 1},
        "bulk_create": {"gateway": 2},
    },
}
# The API's requests per call as measured when this was written (authentication: the key,
# its owner and the throttle's counter, 3 requests on REST for the counter alone): ceilings,
# so that a regression fails and an improvement does not.
API_CEILINGS = {
    "rest": {"me": 5, "project_get": 6, "page_list": 7, "page_list_objects": 8},
    "gateway": {"me": 3, "project_get": 4, "page_list": 5, "page_list_objects": 5},
}


def run_bench(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    reason = unavailable_reason()
    if reason is not None:
        require_service("the local Cloudflare API", reason)
    output = tmp_path / "cloudflare.json"
    sizes = ["--delay-ms", "0", "--samples", "2", "--bulk", "10", "--bulk-samples", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "cloudflare", *sizes, "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout, json.loads(output.read_text())


def test_cloudflare_bench_counts_the_requests_of_each_path(tmp_path: Path) -> None:
    stdout, payload = run_bench(tmp_path)
    results = payload["results"]
    assert set(results) == {"rest", "gateway"}
    for path, operations in MODEL_REQUESTS.items():
        for name, by_class in operations.items():
            figures = results[path]["operations"][name]
            assert figures["requests_by_class"] == by_class, (path, name, figures)
            assert figures["requests_min"] == figures["requests_max"], (path, name, figures)
            assert figures["requests"] == sum(by_class.values()), (path, name)
    for path, endpoints in API_CEILINGS.items():
        for name, ceiling in endpoints.items():
            figures = results[path]["endpoints"][name]
            assert 0 < figures["requests_max"] <= ceiling, (path, name, figures)
    for name, rest in results["rest"]["endpoints"].items():
        gateway = results["gateway"]["endpoints"][name]
        assert set(gateway["requests_by_class"]) == {"gateway"}, name
        assert set(rest["requests_by_class"]) <= {"rest_kv", "rest_d1"}, name
        assert gateway["requests_max"] < rest["requests_min"], (name, gateway, rest)
    # the rate one token's REST budget (4 requests a second) allows at each cost
    save = results["rest"]["operations"]["save"]
    assert save["per_second_at_rest_budget"] == round(4 / 3, 3)
    assert payload["ratios"]["page_with_objects"]["requests"] == 2.0
    assert "page of 20 with objects" in stdout and "rest/gw requests" in stdout
