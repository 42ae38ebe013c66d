"""Train the reference Transformer on Multi30k (or any parallel corpus): checkpoints every epoch, resumes.

Usage::

    python -m inc_transformer_mt.model.train --workdir work/train --time-budget-min 60

Running the same command again resumes from the last completed epoch; the time budget counts the
training time of all runs together. At the end the weights of the last ``--average`` epochs are averaged
into ``<workdir>/final.npz`` (with ``config.json``, ``spm.model`` and ``train_log.json`` beside it), which
:mod:`inc_transformer_mt.model.export` turns into the frozen inference graph.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.data.batching import make_batches, pad_batch
from inc_transformer_mt.data.corpus import multi30k_split, read_lines
from inc_transformer_mt.model.config import ATTENTIONS, LAYER_NORMS, PAD_ID, ModelConfig

logger = logging.getLogger("inc_transformer_mt.train")


def _atomic_json(path: Path, data: object) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def training_batches(
    src: list[list[int]], tgt: list[list[int]], max_tokens: int, rng: np.random.Generator | None
) -> list[list[int]]:
    """Index batches of similar length whose padded size (rows x longest side) stays within ``max_tokens``.

    With ``rng`` the order inside equal lengths and the batch order are shuffled (training); without it
    the result is deterministic (validation).
    """
    lengths = [max(len(s), len(t)) for s, t in zip(src, tgt)]
    noise = rng.random(len(lengths)) if rng is not None else np.zeros(len(lengths))
    order = np.lexsort((noise, np.array(lengths))).tolist()
    batches = make_batches(order, lengths, max_tokens=max_tokens, max_sentences=max(len(lengths), 1))
    if rng is not None:
        rng.shuffle(batches)
    return batches


def prepare_data(workdir: Path, data_dir: str | None, cfg: ModelConfig, src_lang: str, tgt_lang: str):
    """Tokenizer (trained once on the training text) and encoded train/val sets."""
    from inc_transformer_mt.data.tokenizer import Tokenizer, train_tokenizer

    spm_path = workdir / "spm.model"
    train_src = read_lines(multi30k_split("train", src_lang, data_dir))
    train_tgt = read_lines(multi30k_split("train", tgt_lang, data_dir))
    if not spm_path.is_file():
        text = workdir / "spm_train.txt"
        text.write_text("\n".join(train_src + train_tgt) + "\n", encoding="utf-8")
        trained = train_tokenizer([text], workdir / "spm.tmp", cfg.vocab_size)
        os.replace(trained, spm_path)
        os.replace(workdir / "spm.tmp.vocab", workdir / "spm.vocab")
        text.unlink()
    tok = Tokenizer(spm_path)
    val_src = read_lines(multi30k_split("val", src_lang, data_dir))
    val_tgt = read_lines(multi30k_split("val", tgt_lang, data_dir))
    enc = tok.encode_batch
    train = [(s, t) for s, t in zip(enc(train_src), enc(train_tgt)) if len(s) <= 100 and len(t) <= 100]
    return tok, [p[0] for p in train], [p[1] for p in train], enc(val_src), enc(val_tgt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("work/train"))
    parser.add_argument("--data-dir", default=None, help="Multi30k directory (default: auto-detected)")
    parser.add_argument("--src-lang", default="en")
    parser.add_argument("--tgt-lang", default="de")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--max-tokens", type=int, default=3000, help="padded tokens per batch")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--time-budget-min", type=float, default=60.0, help="total training time, all runs")
    parser.add_argument("--average", type=int, default=5, help="average the weights of the last N epochs")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--attention", choices=ATTENTIONS, default="softmax",
                        help="polynomial: Lin et al. (2020)'s Softmax-free attention")
    parser.add_argument("--layer-norm", choices=LAYER_NORMS, default="l2", help="l1: Lin et al. (2020)'s L1 LayerNorm")
    parser.add_argument("--poly-degree", type=int, default=2, help="n of polynomial attention")
    parser.add_argument("--runtime", choices=("stock", "itex"), default="stock",
                        help="TensorFlow with or without the ITEX plugin (stock trained 1.2x faster on an AVX2 EPYC); "
                             "in a process that has already imported TensorFlow, the one it has")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="an existing SentencePiece model to use instead of training one (to compare models "
                             "on the same pieces)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from inc_transformer_mt.runtime import import_tensorflow

    if "tensorflow" in sys.modules:  # called in a process that already chose (a test, a notebook): keep it
        import tensorflow as tf
    else:
        tf = import_tensorflow(args.runtime)  # before anything imports TensorFlow (the model module does)
    from inc_transformer_mt.model import transformer as T

    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "config.json"
    if cfg_path.is_file():
        cfg = ModelConfig.from_dict(json.loads(cfg_path.read_text()))
        logger.info("resuming with the stored config %s", cfg_path)
    else:
        cfg = ModelConfig(
            vocab_size=args.vocab, d_model=args.d_model, num_heads=args.heads, ffn_dim=args.ffn,
            num_encoder_layers=args.layers, num_decoder_layers=args.layers, dropout=args.dropout,
            attention=args.attention, layer_norm=args.layer_norm, poly_degree=args.poly_degree,
        )
        _atomic_json(cfg_path, cfg.to_dict())
    tf.random.set_seed(args.seed)
    if args.tokenizer is not None and not (workdir / "spm.model").is_file():
        shutil.copyfile(args.tokenizer, workdir / "spm.model")
    tok, tr_src, tr_tgt, va_src, va_tgt = prepare_data(workdir, args.data_dir, cfg, args.src_lang, args.tgt_lang)
    if tok.vocab_size != cfg.vocab_size:
        raise SystemExit(f"tokenizer has {tok.vocab_size} pieces, config says {cfg.vocab_size}")
    logger.info("train pairs %d, val pairs %d", len(tr_src), len(va_src))

    init = T.init_params(cfg, args.seed)
    names = list(init)
    variables = [tf.Variable(init[n], name=n.replace("/", ".")) for n in names]
    params = dict(zip(names, variables))

    class Schedule(tf.keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32) + 1.0
            return args.lr * tf.minimum(step / args.warmup, tf.sqrt(args.warmup / step))

        def get_config(self):
            return {}

    opt = tf.keras.optimizers.Adam(Schedule(), beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    epoch_var = tf.Variable(0, dtype=tf.int64)
    elapsed_var = tf.Variable(0.0, dtype=tf.float64)
    ckpt = tf.train.Checkpoint(params=variables, optimizer=opt, epoch=epoch_var, elapsed=elapsed_var)
    manager = tf.train.CheckpointManager(ckpt, str(workdir / "ckpt"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        logger.info("restored %s (epoch %d, %.1f min trained)", manager.latest_checkpoint,
                    int(epoch_var.numpy()), float(elapsed_var.numpy()) / 60)

    smooth = cfg.label_smoothing
    V = cfg.vocab_size

    def loss_fn(src, tgt, training):
        memory, bias = T.encode(params, src, cfg, training)
        logits = T.decode_train(params, memory, bias, tgt, cfg, training)
        onehot = tf.one_hot(tgt, V, on_value=1.0 - smooth, off_value=smooth / (V - 1))
        xent = tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits)
        weights = tf.cast(tf.not_equal(tgt, PAD_ID), tf.float32)
        return tf.reduce_sum(xent * weights), tf.reduce_sum(weights)

    spec = [tf.TensorSpec([None, None], tf.int32)] * 2

    @tf.function(input_signature=spec)
    def train_step(src, tgt):
        with tf.GradientTape() as tape:
            total, count = loss_fn(src, tgt, True)
            loss = total / count
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return total, count

    @tf.function(input_signature=spec)
    def eval_step(src, tgt):
        return loss_fn(src, tgt, False)

    log_path = workdir / "train_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {"epochs": []}
    budget_s = args.time_budget_min * 60
    val_batches = training_batches(va_src, va_tgt, args.max_tokens, None)
    while int(epoch_var.numpy()) < args.max_epochs and float(elapsed_var.numpy()) < budget_s:
        epoch = int(epoch_var.numpy()) + 1
        rng = np.random.default_rng(args.seed + epoch)
        start = time.perf_counter()
        tot, cnt = 0.0, 0.0
        for n, b in enumerate(training_batches(tr_src, tr_tgt, args.max_tokens, rng), start=1):
            t, c = train_step(pad_batch([tr_src[i] for i in b]), pad_batch([tr_tgt[i] for i in b]))
            tot += float(t)
            cnt += float(c)
            if n % 100 == 0:
                logger.info("epoch %d batch %d loss %.4f (%.0f s)", epoch, n, tot / cnt, time.perf_counter() - start)
        train_s = time.perf_counter() - start
        vtot, vcnt = 0.0, 0.0
        for b in val_batches:
            t, c = eval_step(pad_batch([va_src[i] for i in b]), pad_batch([va_tgt[i] for i in b]))
            vtot += float(t)
            vcnt += float(c)
        epoch_var.assign(epoch)
        elapsed_var.assign_add(time.perf_counter() - start)
        _atomic_npz(workdir / f"epoch_{epoch:03d}.npz", {n: v.numpy() for n, v in params.items()})
        stale = workdir / f"epoch_{epoch - args.average:03d}.npz"
        if stale.exists():
            stale.unlink()
        manager.save()
        entry = {"epoch": epoch, "train_loss": tot / cnt, "val_loss": vtot / vcnt, "epoch_s": round(train_s, 1),
                 "step": int(opt.iterations.numpy()), "elapsed_min": round(float(elapsed_var.numpy()) / 60, 2)}
        log["epochs"].append(entry)
        _atomic_json(log_path, log)
        logger.info("epoch %(epoch)d step %(step)d train %(train_loss).4f val %(val_loss).4f "
                    "(%(epoch_s).0f s, %(elapsed_min).1f min total)", entry)

    last = int(epoch_var.numpy())
    files = [workdir / f"epoch_{e:03d}.npz" for e in range(max(1, last - args.average + 1), last + 1)]
    files = [f for f in files if f.is_file()]
    stacks = [np.load(f) for f in files]
    averaged = {n: np.mean([s[n] for s in stacks], axis=0).astype(np.float32) for n in names}
    _atomic_npz(workdir / "final.npz", averaged)
    log["final"] = {"epochs": last, "averaged": [f.name for f in files],
                    "train_minutes": round(float(elapsed_var.numpy()) / 60, 1),
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    _atomic_json(log_path, log)
    logger.info("wrote %s (average of %d epochs)", workdir / "final.npz", len(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
