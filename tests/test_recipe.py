"""Recipe validation: the shipped recipes load; each bad recipe gives its expected one-line error (file:line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inc_transformer_mt.errors import UserError
from inc_transformer_mt.recipe import dump_recipe, load_recipe, recipe_json_schema, resolve_paths
from inc_transformer_mt.recipe.loader import parse_override

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
BAD = sorted((Path(__file__).parent / "data" / "recipes").glob("*.yaml"))

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["reference_kl.yaml", "reference_naive_minmax.yaml", "transformer_lt_inc.yaml"])
def test_shipped_recipes_are_valid(name):
    recipe = load_recipe(RECIPES / name)
    assert recipe.data.calibration.overlaps(recipe.data.tuning) is False


def test_default_recipe_is_kl_symmetric_with_absolute_half_bleu():
    r = load_recipe(RECIPES / "reference_kl.yaml")
    assert (r.calibration.method, r.calibration.kl_mode) == ("kl", "symmetric")
    assert (r.tuning.criterion.type, r.tuning.criterion.max_drop) == ("absolute", 0.5)
    assert r.backend == "itex"


def test_naive_recipe_is_minmax_without_fallback():
    r = load_recipe(RECIPES / "reference_naive_minmax.yaml")
    assert r.calibration.method == "minmax" and r.tuning.fallback == "none"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_recipe_gives_its_expected_error(path):
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    expected = header[len("# expect: "):]
    with pytest.raises(UserError) as info:
        load_recipe(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + expected), message


def test_bad_recipes_cover_the_required_cases():
    names = {p.stem for p in BAD}
    assert {"unknown_key", "per_channel", "overlap", "unanchored", "duplicate_key", "bad_yaml"} <= names


def test_committed_json_schema_matches_the_models():
    committed = (RECIPES / "recipe.schema.json").read_text(encoding="utf-8")
    assert committed == recipe_json_schema(), "run: inc-mt recipe schema > recipes/recipe.schema.json"
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False
    assert {"model", "data"} <= set(schema["required"])


def test_set_overrides_and_reports_origin(tmp_path):
    r = load_recipe(RECIPES / "reference_kl.yaml", ["tuning.max_trials=3", "calibration.kl_mode=conjugate"])
    assert r.tuning.max_trials == 3 and r.calibration.kl_mode == "conjugate"
    with pytest.raises(UserError, match=r"quantization.weight_granularity: per_channel .*\(from --set\)"):
        load_recipe(RECIPES / "reference_kl.yaml", ["quantization.weight_granularity=per_channel"])
    with pytest.raises(UserError, match="expected KEY.PATH=VALUE"):
        parse_override("tuning.max_trials")


def test_resolve_paths_and_round_trip(tmp_path):
    recipe = resolve_paths(load_recipe(RECIPES / "reference_kl.yaml"), RECIPES)
    assert Path(recipe.model.path) == (ROOT / "inc_transformer_mt" / "reference").resolve()
    assert Path(recipe.outputs.dir).is_absolute()
    dumped = tmp_path / "resolved.yaml"
    dumped.write_text(dump_recipe(recipe), encoding="utf-8")
    assert load_recipe(dumped) == recipe


def test_recipe_validate_cli_exit_codes_and_no_tensorflow():
    code = ("import sys; from inc_transformer_mt.cli.main import main; rc = main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'recipe validate imported TensorFlow'; sys.exit(rc)")
    ok = subprocess.run([sys.executable, "-c", code, "recipe", "validate", str(RECIPES / "reference_kl.yaml")],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-c", code, "recipe", "validate", str(BAD[0])], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_the_annotated_recipe_in_recipes_readme_is_valid(tmp_path):
    """The documented example names every key: it must stay a valid recipe as the schema changes."""
    import re

    from inc_transformer_mt.recipe import load_recipe

    text = (Path(__file__).resolve().parent.parent / "recipes" / "README.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    (tmp_path / "r.yaml").write_text(block)
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.tuning.engine == "own" and recipe.passes[0] == "dedupe_quantize"
