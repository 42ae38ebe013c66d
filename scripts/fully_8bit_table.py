"""Render the fully 8-bit table (docs/results.md) from scripts/measure_fully_8bit.sh's outputs: each row's
report.json (BLEU, drop, the per-type precision census of the final graph), its model file, and the
benchmark run that measured every row side by side (throughput and peak RSS against the best FP32)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [
    ("reference_kl", "INT8 MatMuls only (reference_kl.yaml)"),
    ("reference_int8_attention", "+ INT8 attention"),
    ("reference_int8_cache", "+ INT8 K/V cache"),
    ("reference_integer_softmax", "+ integer Softmax"),
    ("reference_fully_8bit", "+ integer LayerNorm = fully 8-bit, post-training"),
]
TYPES = ("MatMul", "BatchMatMulV2", "GatherNd", "Softmax", "LayerNorm")


def below_fp32(census: dict) -> str:
    """'8-bit or integer / total' per op type (GatherNd: the float ones it could move in 8 bits)."""
    parts = []
    for t in TYPES:
        c = census[t]
        low = sum(c[k]["outside_loop"] + c[k]["inside_loop"] for k in ("int8", "integer"))
        total = low + c["fp32"]["outside_loop"] + c["fp32"]["inside_loop"]
        parts.append(f"{t} {low}/{total}")
    return ", ".join(parts)


def main(out: Path) -> None:
    bench = json.loads((out / "bench" / "benchmark.json").read_text())
    models = {m["label"]: m for m in bench["models"]}
    best = {m["label"]: m["best"] for m in bench["models"] if m.get("best")}
    fp32_labels = [m["label"] for m in bench["models"] if m["precision"] == "fp32"]
    fp32_label = max(fp32_labels, key=lambda k: best[k]["sentences_per_s"])
    fp32_best = best[fp32_label]
    fp32_bytes = models[fp32_labels[0]]["file_bytes"]
    print("| configuration | val[0:914] BLEU (drop) | test_2016_flickr BLEU (drop) | below FP32, by op type | "
          "model file vs FP32 | peak RSS vs best FP32 | sent/s vs best FP32 |")
    print("|---|---|---|---|---|---|---|")
    fp32 = None
    for name, label in ROWS:
        path = out / name / "report.json"
        if not path.is_file():
            print(f"| {label} | not run | | | | | |")
            continue
        r = json.loads(path.read_text())
        i8, held = r["int8"], r["heldout"]
        fp32 = (r["fp32"]["tuning_bleu"], held["fp32_bleu"])
        m, t = models.get(name), best.get(name)
        size = f"{m['file_bytes'] / fp32_bytes:.2f}x" if m else "-"
        rss = f"{t['peak_rss_mb']:.0f} MiB ({t['peak_rss_mb'] / fp32_best['peak_rss_mb']:.2f}x)" if t else "-"
        speed = f"{t['sentences_per_s']:.1f} ({t['sentences_per_s'] / fp32_best['sentences_per_s']:.2f}x)" if t else "-"
        print(f"| {label} | {i8['tuning_bleu']:.2f} ({i8['drop']:+.2f}) | {held['int8_bleu']:.2f} ({held['drop']:+.2f}) | "
              f"{below_fp32(i8['precision_census'])} | {size} | {rss} | {speed} |")
    if fp32:
        print(f"\nFP32: val[0:914] {fp32[0]:.2f}, test_2016_flickr {fp32[1]:.2f}; best FP32 in the benchmark: "
              f"{fp32_best['sentences_per_s']:.1f} sent/s, {fp32_best['peak_rss_mb']:.0f} MiB peak RSS "
              f"({fp32_label}, {fp32_best['setting']['runtime']}, {fp32_best['setting']['streams']} streams x "
              f"{fp32_best['setting']['max_sentences']} sentences).")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/f8"))
