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
    ("integer_transformer_kl", "Lin et al.'s trained Integer Transformer, INT8 MatMuls only (drop vs its own FP32)"),
    ("integer_transformer_fully_8bit", "fully 8-bit, Lin et al.'s trained Integer Transformer (drop vs its own FP32)"),
]
TYPES = ("MatMul", "BatchMatMulV2", "GatherNd", "Softmax", "LayerNorm", "PolyAttention")


def below_fp32(census: dict) -> str:
    """'8-bit or integer / total' per op type (GatherNd: the float ones it could move in 8 bits)."""
    parts = []
    for t in TYPES:
        c = census.get(t)
        if c is None:  # a report from before the type existed
            continue
        low = sum(c[k]["outside_loop"] + c[k]["inside_loop"] for k in ("int8", "integer"))
        total = low + c["fp32"]["outside_loop"] + c["fp32"]["inside_loop"]
        if total or t != "PolyAttention":  # PolyAttention only where the model has it
            parts.append(f"{t} {low}/{total}")
    return ", ".join(parts)


def main(out: Path, bench_dir: str = "bench", only: list[str] | None = None) -> None:
    """Rows of ``out``; throughput and memory from ``out/bench_dir`` (rows it did not measure show "-")."""
    bench = json.loads((out / bench_dir / "benchmark.json").read_text())
    models = {m["label"]: m for m in bench["models"]}
    best = {m["label"]: m["best"] for m in bench["models"] if m.get("best")}
    fp32_labels = [m["label"] for m in bench["models"] if m["precision"] == "fp32"]
    fp32_label = max(fp32_labels, key=lambda k: best[k]["sentences_per_s"])
    fp32_best = best[fp32_label]
    fp32_bytes = models[fp32_labels[0]]["file_bytes"]
    print("| configuration | val[0:914] BLEU (drop) | test_2016_flickr BLEU (drop) | below FP32, by op type | "
          "model file vs FP32 | peak RSS vs best FP32 | sent/s vs best FP32 |")
    print("|---|---|---|---|---|---|---|")
    fp32: dict[str, tuple[float, float]] = {}
    for name, label in ROWS:
        if only is not None and name not in only:
            continue
        path = out / name / "report.json"
        if not path.is_file():
            print(f"| {label} | not run | | | | | |")
            continue
        r = json.loads(path.read_text())
        i8, held = r["int8"], r["heldout"]
        fp32.setdefault(r["model"]["path"], (r["fp32"]["tuning_bleu"], held["fp32_bleu"]))
        m, t = models.get(name), best.get(name)
        size = f"{m['file_bytes'] / fp32_bytes:.2f}x" if m else "-"
        rss = f"{t['peak_rss_mb']:.0f} MiB ({t['peak_rss_mb'] / fp32_best['peak_rss_mb']:.2f}x)" if t else "-"
        speed = f"{t['sentences_per_s']:.1f} ({t['sentences_per_s'] / fp32_best['sentences_per_s']:.2f}x)" if t else "-"
        print(f"| {label} | {i8['tuning_bleu']:.2f} ({i8['drop']:+.2f}) | {held['int8_bleu']:.2f} ({held['drop']:+.2f}) | "
              f"{below_fp32(i8['precision_census'])} | {size} | {rss} | {speed} |")
    for path, (tuning, heldout) in fp32.items():
        print(f"\nFP32 {Path(path).parent.name}: val[0:914] {tuning:.2f}, test_2016_flickr {heldout:.2f}.")
    if fp32:
        print(f"\nBest FP32 in the benchmark: "
              f"{fp32_best['sentences_per_s']:.1f} sent/s, {fp32_best['peak_rss_mb']:.0f} MiB peak RSS "
              f"({fp32_label}, {fp32_best['setting']['runtime']}, {fp32_best['setting']['streams']} streams x "
              f"{fp32_best['setting']['max_sentences']} sentences).")


if __name__ == "__main__":
    # fully_8bit_table.py [OUT [BENCH_DIR [ROW,ROW...]]]
    args = sys.argv[1:]
    main(Path(args[0] if args else "out/f8"), args[1] if len(args) > 1 else "bench",
         args[2].split(",") if len(args) > 2 else None)
