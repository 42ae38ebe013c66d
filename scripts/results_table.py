"""Render the measured table (docs/results.md body) from the report.json files of scripts/measure_table.sh."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [
    ("naive_minmax", "naive INT8: every MatMul, min/max ranges"),
    ("kl_symmetric", "KL symmetric, every MatMul"),
    ("kl_independent", "KL independent, every MatMul"),
    ("kl_conjugate", "KL conjugate, every MatMul"),
    ("tuned_kl_itex_own", "tuned (default recipe: KL symmetric + fallback), ITEX backend"),
    ("tuned_kl_itex_inc", "tuned (default recipe), ITEX backend"),
    ("tuned_kl_default_own", "tuned (default recipe), default (oneDNN) backend"),
    ("tuned_kl_default_inc", "tuned (default recipe), default (oneDNN) backend"),
    ("tuned_kl_strict_own", "tuned, default recipe with max_drop 0.02 (fallback at work), ITEX"),
    ("tuned_kl_strict_inc", "tuned, default recipe with max_drop 0.02 (fallback at work), ITEX"),
]


def main(out: Path) -> None:
    print("| configuration | engine | status | val[0:914] BLEU (drop) | test_2016_flickr BLEU (drop) | INT8 MatMuls "
          "(in loop) | MatMul FLOPs INT8 | trials | tune wall time |")
    print("|---|---|---|---|---|---|---|---|---|")
    fp32 = None
    for name, label in ROWS:
        path = out / name / "report.json"
        if not path.is_file():
            print(f"| {label} | | not run | | | | | | |")
            continue
        r = json.loads(path.read_text())
        fp32 = fp32 or (r["fp32"]["tuning_bleu"], r.get("heldout", {}).get("fp32_bleu"))
        q = r.get("int8") or r.get("closest_trial")
        h = r.get("heldout") or {}
        loop = q["matmul_census"]["int8"]["inside_loop"] if q else ""
        loop_total = (q["matmul_census"]["int8"]["inside_loop"] + q["matmul_census"]["fp32"]["inside_loop"]) if q else ""
        crit = f"{r['criterion']['max_drop']:g}"
        status = f"meets {crit}" if r["status"] == "passed" else f"misses {crit}"
        engine = (r.get("plan") or {}).get("engine", "own")
        print(f"| {label} | {engine} | {status} | {q['tuning_bleu']:.2f} ({q['drop']:+.2f}) | "
              f"{h.get('int8_bleu', float('nan')):.2f} ({h.get('drop', float('nan')):+.2f}) | "
              f"{q['matmuls_int8']}/{q['matmuls_total']} ({loop}/{loop_total}) | {q['matmul_flops_int8_share']:.1%} | "
              f"{len(r['trials'])} | {r['wall_seconds']['total_s'] / 60:.1f} min |")
    if fp32:
        print(f"\nFP32: val[0:914] {fp32[0]:.2f}, test_2016_flickr {fp32[1]:.2f}.")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/table"))
