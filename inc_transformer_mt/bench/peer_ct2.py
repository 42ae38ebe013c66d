"""The peer comparison: the same trained weights in CTranslate2, a C++ engine users pick instead.

Converts a model directory exported by this package (``weights/*`` constants, pre-LayerNorm Transformer, tied
embeddings, sinusoidal positions) to a CTranslate2 model and times it against our graphs on the same
sentences, in one run, on the same machine, with the same settings: ``workers`` processes of one thread
each, batches of ``max_sentences`` sorted by length, beam 4. CTranslate2 is not a dependency of this
package; install it beside it (``pip install ctranslate2``) to run this.

Our start token is the padding id with a zero embedding: the converted decoder embedding has row 0 zeroed
and the output projection keeps the original tied matrix, so the peer computes the same network. Its
beam search stops finished hypotheses and uses its own length normalisation, so translations differ
slightly; BLEU is reported for both.

Usage::

    python -m inc_transformer_mt.bench.peer_ct2 --model inc_transformer_mt/reference --out /tmp/ct2 \\
        --compare fp32=inc_transformer_mt/reference --compare int8=inc_transformer_mt/reference_int8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

__all__ = ["compare", "convert", "main"]


def _t(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(w, np.float32).T)


def convert(model_dir: Path, out: Path, max_positions: int = 512) -> Path:
    """Write a CTranslate2 model of ``model_dir``'s weights into ``out``; returns ``out``."""
    from ctranslate2.specs import transformer_spec

    from inc_transformer_mt.model.export import weights_from_graph
    from inc_transformer_mt.model.graph import load_graph_def, resolve_model
    from inc_transformer_mt.runtime import import_tensorflow

    import_tensorflow("stock")
    model = resolve_model(model_dir)
    cfg = model.meta.model or {}
    p = weights_from_graph(load_graph_def(model.graph_path))
    layers_e, layers_d, heads, d = cfg["num_encoder_layers"], cfg["num_decoder_layers"], cfg["num_heads"], cfg["d_model"]
    spec = transformer_spec.TransformerSpec.from_config((layers_e, layers_d), heads, pre_norm=True)

    # sinusoidal table of the exported graph: sin on the first half, cos on the second (TF official)
    pos = np.arange(max_positions, dtype=np.float32)[:, None]
    n = d // 2
    inv = np.exp(np.arange(n, dtype=np.float32) * -(np.log(1.0e4) / max(n - 1, 1)))
    table = np.concatenate([np.sin(pos * inv), np.cos(pos * inv)], axis=1).astype(np.float32)

    def ln(target, prefix):
        target.gamma = p[f"{prefix}/layer_norm/gamma"]
        target.beta = p[f"{prefix}/layer_norm/beta"]

    def ffn(target, prefix):
        ln(target.layer_norm, prefix)
        target.linear_0.weight, target.linear_0.bias = _t(p[f"{prefix}/filter/kernel"]), p[f"{prefix}/filter/bias"]
        target.linear_1.weight, target.linear_1.bias = _t(p[f"{prefix}/output/kernel"]), p[f"{prefix}/output/bias"]

    emb = np.asarray(p["embedding"], np.float32)
    enc = spec.encoder
    enc.embeddings[0].weight = emb
    enc.position_encodings.encodings = table
    ln(enc.layer_norm, "encoder")
    for i, layer in enumerate(enc.layer):
        pre = f"encoder/layer_{i}/self_attention"
        ln(layer.self_attention.layer_norm, pre)
        layer.self_attention.linear[0].weight = np.concatenate([_t(p[f"{pre}/{x}"]) for x in "qkv"])
        layer.self_attention.linear[1].weight = _t(p[f"{pre}/output"])
        ffn(layer.ffn, f"encoder/layer_{i}/ffn")
    dec = spec.decoder
    start = emb.copy()
    start[0] = 0.0  # the start token is the pad id, whose embedding the exported graph masks to zero
    dec.embeddings.weight = start
    dec.position_encodings.encodings = table
    dec.projection.weight = emb
    ln(dec.layer_norm, "decoder")
    for i, layer in enumerate(dec.layer):
        pre = f"decoder/layer_{i}"
        ln(layer.self_attention.layer_norm, f"{pre}/self_attention")
        layer.self_attention.linear[0].weight = np.concatenate([_t(p[f"{pre}/self_attention/{x}"]) for x in "qkv"])
        layer.self_attention.linear[1].weight = _t(p[f"{pre}/self_attention/output"])
        ln(layer.attention.layer_norm, f"{pre}/encdec_attention")
        layer.attention.linear[0].weight = _t(p[f"{pre}/encdec_attention/q"])
        layer.attention.linear[1].weight = np.concatenate([_t(p[f"{pre}/encdec_attention/{x}"]) for x in "kv"])
        layer.attention.linear[2].weight = _t(p[f"{pre}/encdec_attention/output"])
        ffn(layer.ffn, f"{pre}/ffn")
    vocab = _vocabulary(model.tokenizer_path, emb.shape[0])
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)
    spec.config.bos_token, spec.config.eos_token = "<s>", "</s>"
    spec.config.decoder_start_token = "<s>"
    spec.config.unk_token = vocab[2] if len(vocab) > 2 else "<unk>"
    spec.validate()
    spec.optimize(quantization=None)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out


def _vocabulary(spm_path, size: int) -> list[str]:
    """Piece strings by id; id 0 (pad, our start token) named <s>, id 1 (EOS) </s>."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    pieces = [sp.id_to_piece(i) for i in range(size)]
    pieces[0], pieces[1] = "<s>", "</s>"
    return pieces


def compare(ct2_dir: Path, models: list[tuple[str, Path]], split_src: list[str], references: list[str], *,
            workers: int = 2, max_sentences: int = 8, reps: int = 3) -> dict:
    """Sentences/s of CTranslate2 (float32 and int8) and of our graphs on the same sentences, alternating.

    Both sides: ``workers`` parallel single-thread workers (our streams; CTranslate2's ``inter_threads``),
    batches of at most ``max_sentences``. Medians of ``reps`` timed passes after a warm-up pass.
    """
    import ctranslate2
    import sentencepiece as spm

    from inc_transformer_mt.inference.streams import StreamPool, StreamSpec
    from inc_transformer_mt.metrics.bleu import score
    from inc_transformer_mt.model.graph import resolve_model

    first = resolve_model(models[0][1])
    sp = spm.SentencePieceProcessor(model_file=str(first.tokenizer_path))
    src_tokens = [sp.encode(s, out_type=str) + ["</s>"] for s in split_src]

    def peer(tr):
        res = tr.translate_batch(src_tokens, beam_size=4, max_batch_size=max_sentences, batch_type="examples",
                                 max_decoding_length=256)
        return [sp.decode_pieces([t for t in r.hypotheses[0] if t not in ("<s>", "</s>")]) for r in res]

    runners = {}
    for ct in ("float32", "int8"):
        tr = ctranslate2.Translator(str(ct2_dir), device="cpu", compute_type=ct, inter_threads=workers,
                                    intra_threads=1)
        runners[f"ctranslate2 {ct}"] = (lambda tr=tr: peer(tr))
    pools = []
    for label, path in models:
        pool = StreamPool(resolve_model(path), StreamSpec(streams=workers, threads=1, runtime="itex",
                                                          max_sentences=max_sentences))
        pools.append(pool)
        runners[label] = (lambda pool=pool: pool.translate(split_src, source_name="source"))
    try:
        hyps = {k: run() for k, run in runners.items()}  # warm-up, and the translations scored
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(reps):
            for k, run in runners.items():
                t = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t)
    finally:
        for pool in pools:
            pool.close()
    return {k: {"sentences_per_s": round(len(split_src) / statistics.median(v), 2),
                "runs_s": [round(x, 2) for x in v], "bleu": round(score(hyps[k], references).score, 2)}
            for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="FP32 model directory to convert")
    parser.add_argument("--out", type=Path, required=True, help="where the CTranslate2 model is written")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=MODEL",
                        help="our model to time against it (repeatable)")
    parser.add_argument("--limit", type=int, default=1000, help="test_2016_flickr sentences (default 1000)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    ct2_dir = convert(args.model, args.out)
    if not args.compare:
        print(json.dumps({"converted": str(ct2_dir)}))
        return 0
    from inc_transformer_mt.data.corpus import multi30k_split, read_lines
    from inc_transformer_mt.env import cpu_model, isa_class

    src = read_lines(multi30k_split("test_2016_flickr", "en"))[: args.limit]
    ref = read_lines(multi30k_split("test_2016_flickr", "de"))[: args.limit]
    models = [(c.split("=", 1)[0], Path(c.split("=", 1)[1])) for c in args.compare]
    result = compare(ct2_dir, models, src, ref, reps=args.reps)
    print(json.dumps({"machine": f"{cpu_model()} ({isa_class()})", "sentences": len(src), "results": result},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
