"""Import a TF2 SavedModel as a translation graph the package can quantize: a frozen GraphDef with TF1 (v1)
control flow and no function library, reading int32 ids and writing int32 ids.

Stages (each small and separately tested):

1. :func:`load_signature` — the SavedModel and its serving signature (a UserError lists the signatures found when
   none is usable).
2. :func:`find_roles` — which signature inputs/outputs are the source tokens, the lengths, the output tokens and
   the score.
3. :func:`freeze_lowered` — variables to constants, functional ``While``/``If`` lowered to Enter/Exit/Switch/Merge
   (TensorFlow's own lowering), the function library inlined away.
4. :func:`cut_at_ids` — a signature that takes or returns strings is cut at its id tensors: the input side at the
   first integer tensor every path from the strings to the outputs goes through (after the vocabulary lookup), the
   output side by replaying the string layout ops (reshape, transpose, slice, gather) on the ids the reverse lookup
   reads. Lengths become ``count(ids != pad)``; the first hypothesis of a [batch, n, length] output is taken.
5. :func:`vocabularies` — the token lists of the lookup tables (exported from the tables themselves), so the
   tokenizer maps text to exactly the ids the graph's own lookup produced.

Why cut rather than keep the in-graph lookup: the package batches, sorts and measures sentences by their ids, INC
calibrates on id batches, and a frozen GraphDef cannot hold initialized hash tables; the lookup is a table read, so
moving it into the tokenizer changes no translation (``inc-mt import --check-split`` checks it on real sentences:
:func:`saved_model_outputs` against the imported graph, :func:`compare`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.model import analysis, lowered
from inc_transformer_mt.model.analysis import input_op as _op

__all__ = [
    "ImportedGraph",
    "Roles",
    "compare",
    "cut_at_ids",
    "find_roles",
    "freeze_lowered",
    "import_saved_model",
    "load_signature",
    "vocabularies",
]

logger = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME, SCORE_NAME = "input_ids", "output_ids", "output_scores"
#: ops that only move string elements around: replayed on ids when the output side is cut
LAYOUT_OPS = {"Identity": "T", "Reshape": "T", "Transpose": "T", "StridedSlice": "T", "Squeeze": "T",
              "ExpandDims": "T", "GatherV2": "Tparams", "GatherNd": "Tparams", "Slice": "T", "Tile": "T",
              "ConcatV2": "T", "Pack": "T", "ReverseSequence": "T", "ReverseV2": "T"}
FUNCTIONAL_OPS = {"While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall", "StatefulPartitionedCall",
                  "Case", "StatelessCase"}
#: signature key names that look like lengths, token ids, scores (used only to break ties)
_TOKEN_KEYS = ("tokens", "ids", "input_ids", "inputs", "source", "src", "input")
_OUTPUT_KEYS = ("tokens", "ids", "outputs", "output_ids", "predictions", "translations")
_SCORE_KEYS = ("log_probs", "scores", "score", "output_scores", "log_prob")


# ---------------------------------------------------------------------------------------------- stage 1
def _describe(fn) -> str:
    ins = ", ".join(f"{k}: {s.dtype.name}{s.shape}" for k, s in sorted(fn.structured_input_signature[1].items()))
    outs = ", ".join(f"{k}: {s.dtype.name}{s.shape}" for k, s in sorted(fn.structured_outputs.items()))
    return f"({ins}) -> ({outs})"


def load_signature(path: Path, key: str | None):
    """(the loaded SavedModel, its concrete signature function, the key used)."""
    import tensorflow as tf

    if not path.is_dir():
        raise UserError(f"{path}: not a SavedModel directory")
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise UserError(f"{path}: not a SavedModel (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        first = str(getattr(exc, "message", exc)).strip().splitlines()[0]
        raise UserError(f"{path}: cannot load the SavedModel ({type(exc).__name__}: {first})") from None
    sigs = dict(getattr(loaded, "signatures", {}))
    if not sigs:
        raise UserError(f"{path}: the SavedModel has no signatures; export it with a serving signature "
                        "(token ids or strings in, token ids or strings out)")
    if key is None:
        key = "serving_default" if "serving_default" in sigs else (next(iter(sigs)) if len(sigs) == 1 else None)
        if key is None:
            found = "; ".join(f"{k} {_describe(f)}" for k, f in sorted(sigs.items()))
            raise UserError(f"{path}: several signatures and none is serving_default; choose one with --signature "
                            f"(found: {found})")
    if key not in sigs:
        found = "; ".join(f"{k} {_describe(f)}" for k, f in sorted(sigs.items()))
        raise UserError(f"{path}: no signature {key!r} (found: {found})")
    return loaded, sigs[key], key


# ---------------------------------------------------------------------------------------------- stage 2
@dataclass(frozen=True)
class Roles:
    """Signature keys by role."""

    tokens: str
    lengths: tuple[str, ...]
    output: str
    score: str | None
    input_is_string: bool
    output_is_string: bool
    output_rank: int


def _pick(cands: Sequence[str], preferred: Iterable[str]) -> str | None:
    if len(cands) == 1:
        return cands[0]
    for name in preferred:
        if name in cands:
            return name
    return None


def find_roles(fn, path: Path, *, input_key: str | None = None, output_key: str | None = None,
               score_key: str | None = None) -> Roles:
    """The signature's source-token input (rank 2, string or integer), length inputs (rank 1, integer), output
    tokens (rank 2 or 3, string or integer) and score (float); a UserError naming the signature otherwise."""
    import tensorflow as tf

    ins: dict[str, Any] = fn.structured_input_signature[1]
    outs: dict[str, Any] = fn.structured_outputs

    def tokenlike(spec, ranks) -> bool:
        return (spec.dtype == tf.string or spec.dtype.is_integer) and spec.shape.rank in ranks

    why = f"signature {_describe(fn)}"
    tok_cands = [k for k, s in ins.items() if tokenlike(s, (2,))] if input_key is None else [input_key]
    tokens = _pick(tok_cands, _TOKEN_KEYS)
    if tokens is None or tokens not in ins or not tokenlike(ins[tokens], (2,)):
        raise UserError(f"{path}: no usable source input (string or integer tokens [batch, length]; --input-key "
                        f"chooses one) in {why}")
    lengths = tuple(k for k, s in ins.items() if k != tokens and s.dtype.is_integer and s.shape.rank == 1)
    other = sorted(set(ins) - {tokens, *lengths})
    if other:
        raise UserError(f"{path}: signature input(s) {', '.join(other)} are neither the source tokens nor lengths; "
                        f"cannot feed them from ids ({why})")
    out_cands = [k for k, s in outs.items() if tokenlike(s, (2, 3))] if output_key is None else [output_key]
    output = _pick(out_cands, _OUTPUT_KEYS)
    if output is None or output not in outs or not tokenlike(outs[output], (2, 3)):
        raise UserError(f"{path}: no usable output (string or integer tokens [batch, length] or [batch, n, length]; "
                        f"--output-key chooses one) in {why}")
    if score_key is None:
        score = _pick([k for k, s in outs.items() if s.dtype.is_floating and s.shape.rank in (1, 2)
                       and k in _SCORE_KEYS], _SCORE_KEYS)
    else:
        if score_key not in outs:
            raise UserError(f"{path}: --score-key {score_key!r} is not an output of {why}")
        score = score_key
    return Roles(tokens=tokens, lengths=lengths, output=output, score=score,
                 input_is_string=ins[tokens].dtype == tf.string, output_is_string=outs[output].dtype == tf.string,
                 output_rank=outs[output].shape.rank)


# ---------------------------------------------------------------------------------------------- stage 3
def freeze_lowered(fn, path: Path):
    """(frozen GraphDef with v1 control flow and no functions, {signature input key: placeholder op name},
    {signature output key: tensor name})."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:
        frozen = convert_variables_to_constants_v2(fn, lower_control_flow=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path}: cannot freeze the signature ({type(exc).__name__}: {exc})") from None
    graph_def = frozen.graph.as_graph_def()
    left = sorted({n.op for n in graph_def.node if n.op in FUNCTIONAL_OPS})
    if left or len(graph_def.library.function):
        raise RuntimeError(f"{path}: freezing left functional ops {left} / {len(graph_def.library.function)} "
                           "library functions; the graph cannot be quantized inside its loop")
    in_names = [t.name for t in frozen.inputs]
    keys = list(fn.structured_input_signature[1])
    # the frozen function keeps the signature's input order; TensorSpec names are the keys
    by_key = {}
    for key in keys:
        match = [n for n in in_names if n.split(":")[0] == key]
        if not match:
            raise RuntimeError(f"{path}: frozen graph has no input for signature key {key!r} ({in_names})")
        by_key[key] = match[0].split(":")[0]
    # outputs come in the order of the signature's flattened (key-sorted) structure
    out_keys = sorted(fn.structured_outputs)
    if len(out_keys) != len(frozen.outputs):
        raise RuntimeError(f"{path}: frozen graph has {len(frozen.outputs)} outputs for {len(out_keys)} signature keys")
    outputs = {k: t.name for k, t in zip(out_keys, frozen.outputs, strict=True)}
    return graph_def, by_key, outputs


# ---------------------------------------------------------------------------------------------- stage 4
def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _reach(starts: Iterable[str], readers: dict[str, list[Any]], avoid: set[str] = frozenset()) -> dict[str, int]:  # type: ignore[assignment]
    """Forward BFS over :func:`~inc_transformer_mt.model.analysis.consumers`: node -> distance from ``starts``
    (not entering ``avoid``)."""
    dist = {s: 0 for s in starts if s not in avoid}
    queue = deque(dist)
    while queue:
        cur = queue.popleft()
        for nxt in (r.name for r in readers.get(cur, ())):
            if nxt not in dist and nxt not in avoid:
                dist[nxt] = dist[cur] + 1
                queue.append(nxt)
    return dist


def _id_tensor_after_lookup(graph_def, graph, start: str, outputs: set[str], path: Path) -> str:
    """The first integer tensor of rank 2 (or unknown) that every data path from ``start`` to ``outputs`` passes
    through: the ids the string input is looked up to."""
    consumers = analysis.consumers(graph_def, control=False)
    dist = _reach([start], consumers)
    for name in sorted(dist, key=dist.__getitem__):
        if name == start:
            continue
        op = graph.get_operation_by_name(name)
        if len(op.outputs) != 1 or not op.outputs[0].dtype.is_integer or op.outputs[0].shape.rank not in (None, 2):
            continue
        if not outputs & set(_reach([start], consumers, avoid={name})):
            return op.outputs[0].name
    raise UserError(f"{path}: cannot find the token-id tensor behind the string input (no integer tensor "
                    "[batch, length] that all paths from the input go through); export a signature that takes ids")


def _replay_on_ids(graph_def, graph, output: str, path: Path) -> str:
    """Add to ``graph_def`` a copy of the string ops between the reverse vocabulary lookup and ``output``, working
    on the ids the lookup reads; returns the ids tensor laid out as ``output`` is."""
    import tensorflow as tf

    by_name = {n.name: n for n in graph_def.node}
    memo: dict[str, tuple[str, Any]] = {}

    def ids_of(tensor: str) -> tuple[str, Any]:
        """(the ids tensor standing for string ``tensor``, its dtype)"""
        if tensor in memo:
            return memo[tensor]
        node = by_name[_op(tensor)]
        if node.op == "LookupTableFindV2":
            keys = _tensor(node.input[1])
            result = (keys, graph.get_tensor_by_name(keys).dtype)
        elif node.op in LAYOUT_OPS:
            clone = type(node)()
            clone.CopyFrom(node)
            clone.name = f"{node.name}/ids"
            del clone.input[:]
            dtype = None
            for i in node.input:
                if i.startswith("^"):
                    continue
                if graph.get_tensor_by_name(_tensor(i)).dtype == tf.string:
                    src, dtype = ids_of(_tensor(i))
                    clone.input.append(src)
                else:
                    clone.input.append(i)
            clone.attr[LAYOUT_OPS[node.op]].type = dtype.as_datatype_enum
            clone.attr.pop("_output_shapes", None)
            graph_def.node.append(clone)
            by_name[clone.name] = clone
            index = tensor.rsplit(":", 1)[1]
            result = (f"{clone.name}:{index}", dtype)
        else:
            raise UserError(f"{path}: the string output is computed by {node.op} ({node.name}), which is not a "
                            "vocabulary lookup or a layout op; export a signature that returns ids "
                            "(or choose one with --output-key)")
        memo[tensor] = result
        return result

    return ids_of(_tensor(output))[0]


def _strip_dead_control(graph_def, removed: set[str], remapped: set[str]) -> None:
    """In place: drop every control input on a node that will be gone: one that still reads a removed input by
    data edges, not through a remapped tensor's op (a node only control-dependent on those stays, without the
    control input)."""
    consumers = analysis.consumers(graph_def, control=False)
    dead = set(_reach(removed, consumers, avoid=remapped))
    for n in graph_def.node:
        if n.name in dead:
            continue
        keep = [i for i in n.input if not (i.startswith("^") and _op(i) in dead)]
        if len(keep) != len(n.input):
            del n.input[:]
            n.input.extend(keep)


@dataclass
class ImportedGraph:
    graph_def: Any
    source_table: str | None = None  # placeholder op of the source lookup table (string signatures)
    target_table: str | None = None
    has_score: bool = False
    notes: list[str] = field(default_factory=list)


def _table_of(graph_def, tensor: str, reverse: bool) -> str | None:
    """The Placeholder op behind the table handle of the lookup next to ``tensor``: for the input side, a
    LookupTableFindV2 upstream of the ids; for the output side, the one whose keys are ``tensor``'s producer."""
    by_name = {n.name: n for n in graph_def.node}
    lookups = [n for n in graph_def.node if n.op == "LookupTableFindV2"]
    for n in lookups:
        keys_dtype = n.attr["Tin"].type
        string_keys = keys_dtype == 7  # DT_STRING
        if string_keys == reverse:
            continue
        handle = by_name.get(_op(n.input[0]))
        while handle is not None and handle.op == "Identity":
            handle = by_name.get(_op(handle.input[0]))
        if handle is not None and handle.op == "Placeholder":
            return handle.name
    return None


def cut_at_ids(graph_def, roles: Roles, placeholders: dict[str, str], outputs: dict[str, str], pad_id: int,
               path: Path) -> ImportedGraph:
    """The graph rewired to read ``input_ids`` (int32 [batch, length]) and write ``output_ids`` (int32
    [batch, length]) and ``output_scores`` (float32 [batch]) when the signature has a score."""
    import tensorflow as tf
    from tensorflow.python.framework.graph_util import extract_sub_graph

    taken = {n.name for n in graph_def.node}
    clash = taken & {INPUT_NAME, OUTPUT_NAME, SCORE_NAME}
    if clash:
        raise UserError(f"{path}: the graph already has a node named {min(clash)!r}")
    with tf.Graph().as_default() as probe:
        tf.import_graph_def(graph_def, name="")
    token_ph = placeholders[roles.tokens]
    out_tensor = outputs[roles.output]
    result = ImportedGraph(graph_def=None, has_score=roles.score is not None)
    if roles.input_is_string:
        ids_in = _id_tensor_after_lookup(graph_def, probe, token_ph, {_op(out_tensor)}, path)
        result.source_table = _table_of(graph_def, ids_in, reverse=False)
        result.notes.append(f"source strings cut at {ids_in} (after the vocabulary lookup)")
    else:
        ids_in = f"{token_ph}:0"
    if roles.output_is_string:
        out_tensor = _replay_on_ids(graph_def, probe, out_tensor, path)
        result.target_table = _table_of(graph_def, out_tensor, reverse=True)
        result.notes.append(f"output strings cut at the ids of the reverse lookup ({out_tensor})")
        with tf.Graph().as_default() as probe:
            tf.import_graph_def(graph_def, name="")
    removed = {token_ph, *(placeholders[k] for k in roles.lengths)}
    removed |= {n.name for n in graph_def.node if n.op == "Placeholder" and n.name not in removed
                and probe.get_operation_by_name(n.name).outputs[0].dtype == tf.resource}
    remapped = {_op(ids_in)} | {placeholders[k] for k in roles.lengths}
    _strip_dead_control(graph_def, removed, remapped)

    with tf.Graph().as_default() as g:
        ids = tf.compat.v1.placeholder(tf.int32, [None, None], name=INPUT_NAME)
        in_dtype = probe.get_tensor_by_name(ids_in).dtype
        input_map = {ids_in: tf.cast(ids, in_dtype) if in_dtype != tf.int32 else ids}
        length = tf.reduce_sum(tf.cast(tf.not_equal(ids, pad_id), tf.int32), axis=1)
        for key in roles.lengths:
            t = probe.get_tensor_by_name(f"{placeholders[key]}:0")
            input_map[t.name] = tf.cast(length, t.dtype)
        wanted = [out_tensor] + ([outputs[roles.score]] if roles.score else [])
        got = tf.import_graph_def(graph_def, input_map=input_map, return_elements=wanted, name="")
        out = got[0]
        if out.shape.rank == 3 or roles.output_rank == 3:
            out = out[:, 0, :]
        tf.identity(tf.cast(out, tf.int32), name=OUTPUT_NAME)
        if roles.score:
            score = got[1]
            if score.shape.rank == 2:
                score = score[:, 0]
            tf.identity(tf.cast(score, tf.float32), name=SCORE_NAME)
    names = [OUTPUT_NAME] + ([SCORE_NAME] if roles.score else [])
    cut = extract_sub_graph(g.as_graph_def(), names)
    left = sorted(n.name for n in cut.node if n.op == "Placeholder" and n.name != INPUT_NAME)
    if left:
        raise UserError(f"{path}: after the cut the graph still reads {', '.join(left[:3])}; "
                        "it cannot run from token ids alone")
    tables = sorted({n.op for n in cut.node if "Table" in n.op})
    if tables:
        raise UserError(f"{path}: after the cut the graph still uses lookup tables ({', '.join(tables)})")
    result.graph_def = cut
    return result


# ---------------------------------------------------------------------------------------------- stage 5
def _export_table(fn, placeholder: str, string_keys: bool) -> list[str]:
    """The table behind ``placeholder`` (a captured resource of ``fn``) as a token list in id order."""
    import tensorflow as tf

    for ext, internal in zip(fn.captured_inputs, fn.graph.internal_captures, strict=False):
        if internal.op.name == placeholder:
            kt, vt = (tf.string, tf.int64) if string_keys else (tf.int64, tf.string)
            keys, values = tf.raw_ops.LookupTableExportV2(table_handle=ext, Tkeys=kt, Tvalues=vt)
            pairs = (zip(values.numpy().tolist(), keys.numpy().tolist(), strict=True) if string_keys
                     else zip(keys.numpy().tolist(), values.numpy().tolist(), strict=True))
            by_id = dict(pairs)
            if sorted(by_id) != list(range(len(by_id))):
                raise UserError(f"table {placeholder}: ids are not 0..{len(by_id) - 1}; cannot write it as a "
                                "vocabulary file")
            return [by_id[i].decode("utf-8") for i in range(len(by_id))]
    raise RuntimeError(f"no captured table for {placeholder}")


def vocabularies(fn, imported: ImportedGraph) -> tuple[list[str] | None, list[str] | None]:
    src = _export_table(fn, imported.source_table, True) if imported.source_table else None
    tgt = _export_table(fn, imported.target_table, False) if imported.target_table else None
    return src, tgt


# ------------------------------------------------------------------------------------------- the whole
def import_saved_model(path: Path, *, signature: str | None = None, input_key: str | None = None,
                       output_key: str | None = None, score_key: str | None = None, pad_id: int | None = None):
    """(ImportedGraph, Roles, source vocabulary or None, target vocabulary or None, signature key)."""
    loaded, fn, key = load_signature(path, signature)  # ``loaded`` owns the variables: keep it alive
    roles = find_roles(fn, path, input_key=input_key, output_key=output_key, score_key=score_key)
    graph_def, placeholders, outputs = freeze_lowered(fn, path)
    pad = 0 if pad_id is None else pad_id
    imported = cut_at_ids(graph_def, roles, placeholders, outputs, pad, path)
    unswitched = lowered.unswitch_branch_weights(imported.graph_def)
    bypassed = lowered.bypass_constant_identities(imported.graph_def, keep=(OUTPUT_NAME, SCORE_NAME, INPUT_NAME))
    if unswitched:
        imported.notes.append(f"{unswitched} MatMul weight(s) inside a cond branch read their constant directly")
    anchored = lowered.anchor_loop_constants(imported.graph_def)
    decomposed = lowered.decompose_loop_layer_norms(imported.graph_def)
    if decomposed:
        imported.notes.append(f"{decomposed} in-loop FusedBatchNormV3 layer norm(s) written as plain ops")
        from tensorflow.python.framework.graph_util import extract_sub_graph

        imported.graph_def = extract_sub_graph(imported.graph_def,
                                               [OUTPUT_NAME] + ([SCORE_NAME] if imported.has_score else []))
    if bypassed:
        imported.notes.append(f"{bypassed} identities on constants bypassed (loop weights read Const -> Enter)")
    if anchored:
        imported.notes.append(f"{anchored} loop constant(s) anchored in their frame")
    src, tgt = vocabularies(fn, imported)
    del loaded
    return imported, roles, src, tgt, key


def _first_until(seq: list, stop) -> list:
    return seq[: seq.index(stop)] if stop in seq else seq


def saved_model_outputs(path: Path, signature: str, roles: Roles, token_rows: Sequence[Sequence[Any]],
                        pad_id: int, batch_size: int = 32) -> list[list[Any]]:
    """The SavedModel's own output tokens (strings or ids, up to the end of sentence), one list per row of
    ``token_rows`` (the signature's input tokens), with TensorFlow plug-ins' graph optimizers off (as stock
    TensorFlow runs it)."""
    import tensorflow as tf

    _loaded, fn, _ = load_signature(path, signature)  # ``_loaded`` owns the variables: keep it alive
    spec = fn.structured_input_signature[1]
    before = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"use_plugin_optimizers": False})
    out: list[list[Any]] = []
    try:
        for start in range(0, len(token_rows), batch_size):
            chunk = [list(t) for t in token_rows[start:start + batch_size]]
            width = max(1, max(len(t) for t in chunk))
            fill = "" if roles.input_is_string else pad_id
            feed = {roles.tokens: tf.constant([t + [fill] * (width - len(t)) for t in chunk],
                                              dtype=spec[roles.tokens].dtype)}
            for key in roles.lengths:
                feed[key] = tf.constant([len(t) for t in chunk], dtype=spec[key].dtype)
            theirs = fn(**feed)[roles.output].numpy()
            if theirs.ndim == 3:
                theirs = theirs[:, 0, :]
            for row in theirs:
                out.append([t.decode("utf-8") for t in row] if roles.output_is_string else [int(i) for i in row])
    finally:
        tf.config.optimizer.set_experimental_options({"use_plugin_optimizers": before.get("use_plugin_optimizers",
                                                                                           True)})
    return out


def same_tokens(theirs: Sequence[Any], ours: Sequence[int], tokenizer, roles: Roles) -> bool:
    """Whether the SavedModel's output row and the imported graph's ids are the same tokens, up to the end of
    sentence (string outputs: the ids read through the target vocabulary; empty strings are padding)."""
    mine = _first_until([int(i) for i in ours], tokenizer.eos_id)
    if roles.output_is_string:
        target = tokenizer.target
        ref = _first_until([t for t in theirs if t], target[tokenizer.eos_id])
        return [target[i] if i < len(target) else "<unk>" for i in mine] == ref
    return mine == _first_until(list(theirs), tokenizer.eos_id)


def compare(theirs: Sequence[Sequence[Any]], ours: Sequence[Sequence[int]], tokenizer, roles: Roles) -> dict[str, Any]:
    differing = [k + 1 for k, (a, b) in enumerate(zip(theirs, ours, strict=True))
                 if not same_tokens(a, b, tokenizer, roles)]
    return {"sentences": len(ours), "differing": len(differing), "differing_lines": differing[:20],
            "identical": not differing}


# ------------------------------------------------------------------------------------- the model directory
_EOS_TOKENS = ("</s>", "<eos>", "<EOS>")
_PAD_TOKENS = ("<blank>", "<pad>", "<PAD>")
_BOS_TOKENS = ("<s>", "<bos>", "<BOS>")


def _find(tokens: Sequence[str], names: Sequence[str]) -> int | None:
    return next((tokens.index(t) for t in names if t in tokens), None)


def special_ids(target_vocab: Sequence[str] | None, *, eos_id: int | None, pad_id: int | None,
                path: Path) -> tuple[int, int, tuple[int, ...]]:
    """(eos, pad, ids to skip when decoding): given, else read off the target vocabulary's special tokens, else the
    project's convention (pad 0, eos 1)."""
    if target_vocab is None:
        return (1 if eos_id is None else eos_id), (0 if pad_id is None else pad_id), ()
    eos = eos_id if eos_id is not None else _find(target_vocab, _EOS_TOKENS)
    if eos is None:
        raise UserError(f"{path}: the target vocabulary has no end-of-sentence token ({', '.join(_EOS_TOKENS)}); "
                        "give --eos-id")
    pad = pad_id if pad_id is not None else (_find(target_vocab, _PAD_TOKENS) or 0)
    bos = _find(target_vocab, _BOS_TOKENS)
    return eos, pad, tuple(i for i in (bos,) if i is not None)


def toolkit_tokenizer_options(path: Path) -> tuple[dict[str, Any], Path] | None:
    """The OpenNMT Tokenizer options an OpenNMT-tf export keeps in ``assets.extra`` (and the folder its paths are
    relative to), or None when the SavedModel has none."""
    import yaml

    src, tgt = path / "assets.extra" / "source_tokenizer_config.yml", path / "assets.extra" / "target_tokenizer_config.yml"
    if not src.is_file():
        return None
    try:
        options = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        target = yaml.safe_load(tgt.read_text(encoding="utf-8")) if tgt.is_file() else options
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{src}: cannot read the tokenizer configuration ({exc})") from None
    if not isinstance(options, dict):
        raise UserError(f"{src}: expected a mapping of OpenNMT Tokenizer options")
    if target != options:
        raise UserError(f"{path}: source and target tokenizer configurations differ; give one tokenizer spec with "
                        "--tokenizer (a tokenizer.json of type opennmt)")
    if "type" in options:  # OpenNMT-tf's {type: OpenNMTTokenizer, params: {...}} form
        if options.get("type") != "OpenNMTTokenizer":
            raise UserError(f"{src}: tokenizer type {options.get('type')!r} is not the OpenNMT Tokenizer")
        options = dict(options.get("params") or {})
    return options, src.parent


def write_model_dir(out: Path, imported: ImportedGraph, *, tokenizer: Path | None,
                    tokenizer_options: tuple[dict[str, Any], Path] | None, source_vocab: list[str] | None,
                    target_vocab: list[str] | None, eos_id: int, pad_id: int, skip_ids: Sequence[int],
                    max_source_tokens: int, provenance: dict[str, Any]) -> None:
    """Write ``model.pb.gz``, ``model.json`` and the tokenizer into ``out`` (an empty staging directory)."""
    import json
    import shutil

    from inc_transformer_mt.atomic import atomic_write
    from inc_transformer_mt.data.tokenizer import SPEC_NAME, copy_tokenizer

    atomic_write(out / "model.pb.gz", imported.graph_def.SerializeToString(deterministic=True), gzip_level=6)
    if source_vocab is not None:
        if tokenizer is not None:
            tok_name = copy_tokenizer(tokenizer, out)
        else:
            if tokenizer_options is None:
                raise UserError(f"{provenance['saved_model']}: the signature takes token strings but no tokenizer "
                                "options were found; give --tokenizer (a tokenizer.json of type opennmt)")
            options, base = tokenizer_options
            options = dict(options)
            for key, value in list(options.items()):
                if key.endswith("_path") and isinstance(value, str) and value:
                    src = Path(value) if Path(value).is_absolute() else base / value
                    if not src.is_file():
                        raise UserError(f"{base}: tokenizer option {key}: {src} not found")
                    shutil.copyfile(src, out / src.name)
                    options[key] = src.name
            atomic_write(out / "source_vocab.txt", "".join(t + "\n" for t in source_vocab))
            atomic_write(out / "target_vocab.txt", "".join(t + "\n" for t in (target_vocab or source_vocab)))
            spec = {"type": "opennmt", "options": options, "source_vocab": "source_vocab.txt",
                    "target_vocab": "target_vocab.txt", "append_eos": False, "skip_ids": list(skip_ids)}
            atomic_write(out / SPEC_NAME, json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
            tok_name = SPEC_NAME
    else:
        if tokenizer is None:
            raise UserError(f"{provenance['saved_model']}: give --tokenizer (a SentencePiece model or a "
                            "tokenizer.json): the signature takes ids, so the SavedModel does not say how text "
                            "becomes them")
        tok_name = copy_tokenizer(tokenizer, out)
    meta = {"input_tensor": f"{INPUT_NAME}:0", "output_tensor": f"{OUTPUT_NAME}:0",
            "score_tensor": f"{SCORE_NAME}:0" if imported.has_score else None, "tokenizer": tok_name,
            "max_source_tokens": max_source_tokens, "eos_id": eos_id, "pad_id": pad_id,
            "model": {"graph": "model.pb.gz", "imported_from": provenance}}
    atomic_write(out / "model.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
