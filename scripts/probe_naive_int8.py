"""Probe: INC 3.10's default static quantization of the reference model, no tuning (ITEX backend when
ITEX is installed). Calibrates on val sentences 501-600, scores FP32 and INT8 on test_2016_flickr.

    .venv/bin/python scripts/probe_naive_int8.py

A measurement aid for the tuning work, not part of the package; `inc-mt tune` supersedes it.
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ITEX_CPP_MIN_LOG_LEVEL", "3")

from neural_compressor.tensorflow import Model, StaticQuantConfig, quantize_model

from inc_transformer_mt.data.batching import pad_batch
from inc_transformer_mt.data.corpus import multi30k_split, read_parallel
from inc_transformer_mt.inference.translate import Translator
from inc_transformer_mt.metrics.bleu import score
from inc_transformer_mt.model.analysis import op_census
from inc_transformer_mt.model.graph import resolve_model

ref = resolve_model("inc_transformer_mt/reference")
fp32 = Translator(ref)
val_src, _ = read_parallel(multi30k_split("val", "en"), multi30k_split("val", "de"))
calib = [pad_batch(fp32.encode(val_src[i : i + 25])) for i in range(500, 600, 25)]


class DL:
    batch_size = 25

    def __iter__(self):
        for b in calib:
            yield b, None


m = Model(fp32.graph_def)
m.input_tensor_names = ["input_ids"]
m.output_tensor_names = ["output_ids", "output_scores"]
t = time.time()
q = quantize_model(m, StaticQuantConfig(), calib_dataloader=DL(), calib_iteration=len(calib))
print("quantize s", round(time.time() - t, 1), flush=True)
qgd = q.graph_def
print(json.dumps(op_census(qgd).to_dict()["ops"]))
src, refs = read_parallel(multi30k_split("test_2016_flickr", "en"), multi30k_split("test_2016_flickr", "de"))
for name, tr in (("fp32", fp32), ("int8", Translator(ref, graph_def=qgd))):
    t = time.time()
    hyp = tr.translate(src, progress=False)
    dt = time.time() - t
    print(name, "test BLEU", round(score(hyp, refs).score, 2), "s", round(dt, 1), flush=True)
