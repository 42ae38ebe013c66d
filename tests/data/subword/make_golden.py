# Generates tests/data/subword/{vocab.subwords,golden.json} from corpus.txt (text written for this test) with the
# reference implementation
# (tf-models-official 2.15.0, official/legacy/transformer/utils/tokenizer.py):
#   pip download --no-deps tf-models-official==2.15.0 && unzip the wheel's official/ package into a folder,
#   copy corpus.txt there, and run: python make_golden.py tests/data/subword (from that folder)
import importlib
import json
import os
import sys

sys.path.insert(0, ".")
ref = importlib.import_module("official.legacy.transformer.utils.tokenizer")
out = sys.argv[1]
vocab = os.path.join(out, "vocab.subwords")
if os.path.exists(vocab):
    os.remove(vocab)
sub = ref.Subtokenizer.init_from_files(vocab, ["corpus.txt"], target_vocab_size=400, threshold=50, min_count=2)
cases = ["A man is riding a bicycle.", "Zwei Hunde spielen im Schnee.", "", "  leading and  double  spaces ",
         "snake_case and back\\slash", "naïve café — 東京 ☃ 🎉", "Numbers: 3.14, 42% and 2026!",
         "unseenword qwertyzxcv", "Über-große Straßen…", "tab\there\nnewline", "a", "____", "\\\\u123;"]
golden = []
for text in cases:
    ids = sub.encode(text, add_eos=False)
    golden.append({"text": text, "ids": ids, "decoded": sub.decode(ids)})
with open(os.path.join(out, "golden.json"), "w") as fh:
    json.dump({"generator": "tf-models-official 2.15.0 official.legacy.transformer.utils.tokenizer.Subtokenizer",
               "cases": golden}, fh, ensure_ascii=False, indent=1)
print(len(sub.subtoken_list), [len(g["ids"]) for g in golden])
