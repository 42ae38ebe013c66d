"""Loading recipes: YAML with line numbers, ``--set`` overrides, validation errors naming key and line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.recipe.schema import Recipe

__all__ = ["dump_recipe", "key_lines", "load_recipe", "parse_override", "recipe_json_schema", "resolve_paths"]

KeyPath = tuple[Any, ...]


def _key_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int], source: str) -> None:
    """Record the 1-based line of every key (and list item); reject duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(str(p) for p in (*prefix, key))
                raise UserError(f"{source}:{line}: duplicate key '{dotted}' (first at line {seen[key]})")
            seen[key] = line
            lines[(*prefix, key)] = line
            _key_lines(value_node, (*prefix, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*prefix, index)] = item.start_mark.line + 1
            _key_lines(item, (*prefix, index), lines, source)


#: deeper than any recipe needs (the schema's deepest key is 4 levels); guards the recursive composer
MAX_DEPTH = 32


def _check_structure(text: str, path: Path) -> None:
    """Refuse YAML anchors/aliases (a recipe never needs them; "billion laughs" expands them to gigabytes and a
    recursive alias never ends) and absurd nesting, before anything is built from the text."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise UserError(f"{path}:{line}: YAML anchors and aliases (&name, *name) are not allowed in recipes; "
                                "write the value out")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise UserError(f"{path}:{line}: nested deeper than {MAX_DEPTH} levels; not a recipe")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return  # reported with its line by the parser below


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.split(".")):
        raise UserError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. tuning.max_trials=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _apply_override(data: dict[str, Any], keys: list[str], value: Any, text: str) -> None:
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise UserError(f"--set {text!r}: '{key}' is not a mapping in the recipe")
        node = child
    node[keys[-1]] = value


def error_message(error: dict[str, Any]) -> str:
    """One pydantic error in the words every file check of the package uses (recipes, model.json, manifests)."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def first_error(exc: ValidationError) -> str:
    """``dotted.key: message`` of a validation error's first problem."""
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {error_message(err)}"


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate a recipe.

    Raises:
        UserError: unreadable file, invalid YAML, duplicate or unknown key, invalid value, or a setting the
            stack cannot honour; the message names the file, the line and the key.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: recipe not found") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: recipe is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read recipe ({exc.strerror})") from None
    _check_structure(text, path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{where}: invalid YAML ({problem})") from None
    if data is None:
        raise UserError(f"{path}: the recipe is empty (it needs at least model: and data:; see recipes/README.md)")
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a YAML mapping (model:, data:, ...), not {type(data).__name__}")
    lines: dict[KeyPath, int] = {}
    _key_lines(root, (), lines, str(path))
    overridden: set[KeyPath] = set()
    for text_override in overrides:
        keys, value = parse_override(text_override)
        _apply_override(data, keys, value, text_override)
        overridden.add(tuple(keys))
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(first["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        line = None
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        where = f"{path}:{line}" if line is not None else str(path)
        origin = " (from --set)" if any(loc[: len(k)] == k for k in overridden) else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"{where}: {dotted}: {error_message(first)}{origin}{more}") from None


def key_lines(path: str | Path) -> dict[KeyPath, int]:
    """Key path -> 1-based line of a recipe file (list items by index), for errors found after validation
    (e.g. ``("quantization", "rules", 2)``). Empty when the file cannot be read or parsed again."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    lines: dict[KeyPath, int] = {}
    try:
        _key_lines(root, (), lines, str(path))
    except UserError:
        return {}
    return lines


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """The recipe with every path made absolute, relative paths taken from ``base`` (the recipe's folder)."""
    data = recipe.model_dump(mode="json")
    model = data["model"]
    for key in ("path", "tokenizer"):
        model[key] = _resolve(base, model[key])
    d = data["data"]
    d["data_dir"] = _resolve(base, d["data_dir"])
    for part in ("calibration", "tuning", "heldout"):
        if d.get(part) is None:
            continue
        for key in ("source", "reference"):
            d[part][key] = _resolve(base, d[part][key])
    data["outputs"]["dir"] = _resolve(base, data["outputs"]["dir"])
    return Recipe.model_validate(data)


def dump_recipe(recipe: Recipe) -> str:
    """YAML text of a (resolved) recipe, every default written out."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def recipe_json_schema() -> str:
    """The JSON schema of the recipe format (committed as recipes/recipe.schema.json)."""
    return json.dumps(Recipe.model_json_schema(), indent=2, sort_keys=True) + "\n"
