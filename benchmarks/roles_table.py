"""The role table of each CTC model (nntm.roles): tensors and parameters per role.

Also checks the one coding decision that roles replaced: `QP1DMode stats` used to give QP1D to
the tensors named `*running_mean` / `*running_var`; the role rule must select the same tensors
on a model that names them so (column "stats = names"), and select them too when the model is
renamed as an ONNX export would be (`--renamed`: every key becomes `m<i>/<op>_<j>.w_<k>`-like,
keeping only the grouping into modules).

    python benchmarks/roles_table.py                      # every CTC model that is installed
    python benchmarks/roles_table.py --models mobilenetv2 --renamed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
from nntm.roles import STATS_ROLES, derive_roles, role_counts  # noqa: E402

NAME_RULE = ("running_mean", "running_var")


def renamed(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keys replaced by opaque export-style names; modules (prefixes) kept as groups."""
    modules: dict[str, int] = {}
    out = {}
    for key, value in tensors.items():
        prefix = key.rsplit(".", 1)[0] if "." in key else ""
        m = modules.setdefault(prefix, len(modules))
        leaf = sum(1 for k in out if k.startswith(f"net/op_{m}."))
        out[f"net/op_{m}.w_{leaf}"] = value
    return out


def main(argv: list[str] | None = None) -> int:
    from nntm.ce.models import ADAPTERS, get_adapter

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="CTC model names (default: all)")
    ap.add_argument("--renamed", action="store_true", help="also the renamed model")
    args = ap.parse_args(argv)
    names = args.models or sorted(ADAPTERS)
    for model in names:
        adapter = get_adapter(model)
        try:
            adapter.ensure_available()
        except Exception as exc:  # not installed here
            print(f"## {model}: not available ({exc})\n")
            continue
        tensors = {k: np.asarray(v) for k, v in adapter.load().items()}
        variants = [("names", tensors)] + ([("renamed", renamed(tensors))] if args.renamed else [])
        graph = getattr(adapter, "graph_consumers", None)  # ONNX models: roles from the graph
        for label, model_tensors in variants:
            roles = derive_roles(model_tensors, graph() if graph and label == "names" else None)
            by_role = [n for n, r in roles.items() if r in STATS_ROLES]
            by_name = [n for n in tensors if n.endswith(NAME_RULE)]
            print(f"## {model} ({label}): {len(model_tensors)} tensors\n")
            print("| role | tensors | parameters |")
            print("| --- | ---: | ---: |")
            for role, (count, params) in role_counts(roles, model_tensors).items():
                print(f"| {role} | {count} | {params} |")
            print(f"\nQP1DMode stats selects {len(by_role)} tensors by role; the old name rule "
                  f"selected {len(by_name)} on the original names"
                  + (f" (same set: {sorted(by_role) == sorted(by_name)})" if label == "names"
                     else "") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
