"""Tuning recipes: schema (pydantic) and loader (YAML with line numbers). No TensorFlow import."""

from inc_transformer_mt.recipe.loader import dump_recipe, load_recipe, recipe_json_schema, resolve_paths
from inc_transformer_mt.recipe.schema import Recipe

__all__ = ["Recipe", "dump_recipe", "load_recipe", "recipe_json_schema", "resolve_paths"]
