"""``python -m bench api`` runs end to end on tiny sizes: every request answers 200 and the
round trips of an authenticated project read are reported."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import main


def test_api_bench_completes_with_all_200(tmp_path: Path) -> None:
    output = tmp_path / "api.json"
    argv = ["api", "--backend", "sqlite", "--pages", "50", "--requests", "40", "--clients", "2"]
    assert main([*argv, "--workers", "2", "--json", str(output)]) == 0
    result = json.loads(output.read_text())["api"]
    for name, figures in result["endpoints"].items():
        assert figures["statuses"] == {"200": 40}, (name, figures)
        assert figures["transport_errors"] == {}, (name, figures)
    project_read = result["round_trips"]["nimbus_project_read"]
    # the key, its owner (read on every request for their current status), the project
    assert project_read["kv_without_throttle"] == 3 and project_read["sql"] == 0
    assert project_read["kv"] == 4  # plus the throttle's counter increment
