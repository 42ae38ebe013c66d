"""``inc-mt fetch-data``: download Multi30k (en, de) from its public repository."""

from __future__ import annotations

NAME = "fetch-data"
HELP = "download Multi30k (en, de) from its public repository"
QUIET_TENSORFLOW = False


def add_arguments(p) -> None:
    p.add_argument("dest", help="directory to write train/val/test_2016_flickr .gz files into")


def run(args) -> int:
    from inc_transformer_mt.data.corpus import fetch_multi30k

    written = fetch_multi30k(args.dest)
    print(f"{len(written)} file(s) written to {args.dest}")
    return 0
