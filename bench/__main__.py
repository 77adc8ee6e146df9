"""``python -m bench RUN``: the benchmark suite. ``python -m bench --help`` lists the runs;
every run prints a table and, with ``--json PATH``, writes its figures as JSON."""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import write_json

# run name -> module with HELP, add_arguments(parser) and run(options) -> dict
RUNS = {
    "load": "bench.api_load",
    "api": "bench.api",
    "cloudflare": "bench.cloudflare",
    "ops": "bench.ops",
    "scale": "bench.scale",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    runs = parser.add_subparsers(dest="run", required=True)
    for name, module_name in RUNS.items():
        module = importlib.import_module(module_name)
        sub = runs.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.add_argument("--json", help="also write the figures to this file")
    options = parser.parse_args(argv)
    payload = importlib.import_module(RUNS[options.run]).run(options)
    write_json(options.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
