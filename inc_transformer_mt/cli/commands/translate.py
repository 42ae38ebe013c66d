"""``inc-mt translate``: a file (or stdin) to stdout or a file."""

from __future__ import annotations

import sys
from pathlib import Path

from inc_transformer_mt.atomic import atomic_write, check_output_path
from inc_transformer_mt.cli import options
from inc_transformer_mt.errors import UserError

NAME = "translate"
HELP = "translate a file (or stdin) to stdout or a file"


def add_arguments(p) -> None:
    p.add_argument("input", nargs="?", default="-", help="source file, plain or .gz, one sentence a line (- = stdin)")
    p.add_argument("-o", "--output", help="write translations here (atomically) instead of stdout")
    options.add_model_options(p)
    options.add_batching_options(p)
    options.add_runtime_options(p)


def run(args) -> int:
    from inc_transformer_mt.api import translate
    from inc_transformer_mt.data.corpus import parse_lines, read_lines

    if args.output:
        check_output_path(args.output)
    if args.input == "-":
        if sys.stdin is None:  # `<&-`
            raise UserError("stdin is closed: give an input file, or pipe the sentences in")
        name, sentences = "<stdin>", parse_lines(sys.stdin.buffer, "<stdin>", allow_empty=True)
    else:
        name, sentences = args.input, read_lines(args.input, what="input file", allow_empty=True)
    outputs = translate(sentences, model=options.model_options(args), run=options.run_options(args), source_name=name)
    text = "".join(line + "\n" for line in outputs)
    if args.output:
        atomic_write(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0
