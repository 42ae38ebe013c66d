"""The quantization plan: a recipe's op-wise rules resolved against the graph before any trial.

Each rule names an op type or an anchored op-name pattern and a dtype. Rules apply in order (a later match
wins) over every op a rule can name (:func:`inc_transformer_mt.model.analysis.compute_ops`: MatMuls with a
constant weight, attention BatchMatMulV2, Softmax, LayerNorm, GatherNd). What the plan refuses, with the
rule's position and recipe line:

- a rule that matches no op of the model (a typo, or a rule written for another model) -- it would do nothing;
- a dtype an op type cannot take (:data:`~inc_transformer_mt.recipe.schema.DTYPES_BY_OP`: MatMul and attention
  BatchMatMulV2 int8/fp32, Softmax and LayerNorm integer/fp32, GatherNd fp32): the schema refuses
  ``op_type: Softmax, dtype: int8``; here an op-name pattern that reaches a Softmax is refused the same way;
- a plan that leaves no MatMul in INT8.

MatMuls go to INC. The other ops below FP32 (:attr:`QuantPlan.beyond_matmul`) are the package's own rewrites
after INC (:mod:`inc_transformer_mt.passes.eight_bit`); rules with ``fp32`` keep an op FP32 (the report's
census, measured on the final graph, shows it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.recipe.schema import dtype_problem

__all__ = ["QuantPlan", "RuleMatch", "resolve_plan"]


@dataclass(frozen=True)
class RuleMatch:
    """What one rule selected."""

    index: int
    rule: str  # e.g. "op_type: MatMul -> int8"
    line: int | None
    matched: dict[str, int]  # op type -> ops matched


@dataclass(frozen=True)
class QuantPlan:
    """Which MatMuls the rules allow in INT8 (candidates) and which they keep FP32 (forced), plus every other
    rule-nameable op's decided dtype."""

    candidates: list[str]
    forced_fp32: list[str]
    decisions: dict[str, str] = field(default_factory=dict)  # op -> dtype, every rule-nameable op
    op_types: dict[str, str] = field(default_factory=dict)  # op -> type
    rules: list[RuleMatch] = field(default_factory=list)

    @property
    def beyond_matmul(self) -> dict[str, str]:
        """The non-MatMul ops the plan takes below FP32 (INT8 attention, integer Softmax / LayerNorm) -> type."""
        return {op: self.op_types[op] for op, d in sorted(self.decisions.items())
                if self.op_types[op] != "MatMul" and d != "fp32"}

    def by_type(self) -> dict[str, dict[str, int]]:
        """op type -> dtype -> planned count."""
        out: dict[str, Counter] = {}
        for op, dtype in self.decisions.items():
            out.setdefault(self.op_types[op], Counter())[dtype] += 1
        return {t: dict(c) for t, c in out.items()}


def _describe(rule) -> str:
    what = f"op_type: {rule.op_type}" if rule.op_type is not None else f"op_name: '{rule.op_name}'"
    return f"{what} -> {rule.dtype}"


def resolve_plan(rules: Sequence, ops: Mapping[str, str], *, matmuls: Sequence[str] | None = None,
                 rule_lines: Mapping[int, int] | None = None, source: str = "recipe") -> QuantPlan:
    """Apply ``rules`` (recipe QuantRule objects, in order) to ``ops`` (op name -> type).

    ``matmuls``: the MatMuls that can be quantized (those the calibrator instrumented); default: every MatMul in
    ``ops``. ``rule_lines``: rule index -> recipe line, for errors. Raises UserError as the module says.
    """
    rule_lines = rule_lines or {}
    mm_set = set(matmuls) if matmuls is not None else {o for o, t in ops.items() if t == "MatMul"}
    types = {o: t for o, t in ops.items() if t != "MatMul" or o in mm_set}
    decisions = {o: ("int8" if t == "MatMul" else "fp32") for o, t in types.items()}
    matches: list[RuleMatch] = []
    for i, rule in enumerate(rules):
        line = rule_lines.get(i)
        where = f"{source}:{line}: " if line is not None else f"{source}: "
        label = f"quantization.rules[{i}] ({_describe(rule)})"
        if rule.op_type is not None:
            hit = [o for o, t in types.items() if t == rule.op_type]
        else:
            rx = re.compile(rule.op_name)
            hit = [o for o in types if rx.fullmatch(o)]
        if not hit:
            present = ", ".join(sorted(set(types.values()))) or "none"
            raise UserError(f"{where}{label} matches no op in the model (it has: {present}); "
                            "a rule that selects nothing does nothing: fix or remove it")
        bad = sorted({types[o] for o in hit if dtype_problem(types[o], rule.dtype)})
        if bad:
            example = next(o for o in hit if types[o] == bad[0])
            raise UserError(f"{where}{label} selects {', '.join(bad)} op(s) (e.g. {example}): "
                            f"{dtype_problem(bad[0], rule.dtype)}")
        decisions.update(dict.fromkeys(hit, rule.dtype))
        matches.append(RuleMatch(index=i, rule=_describe(rule), line=line, matched=dict(Counter(types[o] for o in hit))))
    candidates = sorted(o for o, d in decisions.items() if types[o] == "MatMul" and d == "int8")
    if not candidates:
        raise UserError(f"{source}: quantization.rules: the rules leave no MatMul in int8")
    forced = sorted(o for o, d in decisions.items() if types[o] == "MatMul" and d == "fp32")
    return QuantPlan(candidates=candidates, forced_fp32=forced, decisions=decisions, op_types=types, rules=matches)
