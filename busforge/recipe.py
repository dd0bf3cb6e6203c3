"""Recipes: the declarative description of a synthetic dataset, validated once and frozen.

A recipe is YAML. `load_recipe` reads it, applies `--set key.path=value` overrides and validates
it with pydantic; every mistake a user can make becomes one `BadInput` line that names the file,
the key path and what is allowed.
"""

from __future__ import annotations

import copy
import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from busforge.errors import BadInput
from busforge.prompts import DEFAULT_PROMPT
from busforge.validation import bad_input, error_path
from busforge.vocab import BOUNDARIES, DEFAULT_SIZE_BINS, ECHOGENICITIES, PATHOLOGIES

SEMVER = re.compile(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?")  # used with fullmatch: no "1.0.0\n"

# Numbers are strict (a YAML `true` is not the count 1) and finite (`.inf` is not a weight).
Weight = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]

# What a recipe may cost to read: its size, and the values it expands to (YAML aliases can make
# a few hundred bytes stand for billions of values).
MAX_RECIPE_BYTES = 4 * 1024 * 1024
MAX_VALUES = 100_000
MAX_DEPTH = 32


class RecipeLoader(yaml.SafeLoader):
    """YAML with 1.2 numbers: `1:2` stays a string (YAML 1.1 reads it as the base-60 number 62),
    which matters for ratios written back unquoted by `dvc exp run --set-param`."""


RecipeLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _mapping_without_duplicates(loader: RecipeLoader, node: yaml.MappingNode, deep: bool = False):
    """A key written twice is a mistake (YAML would keep the last one silently)."""
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, typing.Hashable) and key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {str(key)[:80]!r} appears twice (line {line}); keep one",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


RecipeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def check_size(data: Any, where: str) -> None:
    """Refuse data that expands (through aliases) to more than MAX_VALUES values or nests deeper
    than MAX_DEPTH, before anything walks it in full."""
    budget = MAX_VALUES
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise BadInput(
                f"{where}: expands to more than {MAX_VALUES:,} values (YAML aliases?); write it out plainly"
            )
        if depth > MAX_DEPTH:
            raise BadInput(
                f"{where}: nested more than {MAX_DEPTH} levels deep; a recipe is a few levels of mappings"
            )
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for pair in node.items() for child in pair)
        elif isinstance(node, list | tuple):
            stack.extend((child, depth + 1) for child in node)


def load_yaml(text: str, where: str = "recipe"):
    """Parse recipe YAML; raises yaml.YAMLError, or BadInput for data too deep or too large."""
    try:
        data = yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise BadInput(f"{where}: nested too deeply to read; a recipe is a few levels of mappings") from None
    check_size(data, where)
    return data


class StrictModel(BaseModel):
    """Unknown keys are errors, values are not coerced across types, and models are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_weights(weights: dict[str, float], allowed: tuple[str, ...]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(allowed))
    if unknown:
        raise ValueError(f"unknown name(s) {unknown}; allowed: {', '.join(allowed)}")
    _check_sum(sum(weights.values()), "weights")
    return weights


def _check_sum(total: float, what: str) -> None:
    if total <= 0:
        raise ValueError(f"{what} must sum to a positive number")
    if not math.isfinite(total):  # finite weights can still overflow: {a: 1e308, b: 1e308}
        raise ValueError(f"{what} sum to more than a float holds; scale them down")


class PathologyAttributes(StrictModel):
    """Text attributes of one pathology, as relative weights."""

    echogenicity: dict[str, Weight] = {"homogeneous": 1.0, "heterogeneous": 1.0}
    boundary: dict[str, Weight] = {"clear": 1.0, "unclear": 1.0}

    @field_validator("echogenicity")
    @classmethod
    def _echo(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_weights(v, ECHOGENICITIES)

    @field_validator("boundary")
    @classmethod
    def _boundary(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_weights(v, BOUNDARIES)


def _default_attributes() -> dict[str, PathologyAttributes]:
    # The paper's clinical priors: benign mostly homogeneous and clear, malignant the opposite.
    return {
        "benign": PathologyAttributes(
            echogenicity={"homogeneous": 0.7, "heterogeneous": 0.3}, boundary={"clear": 0.8, "unclear": 0.2}
        ),
        "malignant": PathologyAttributes(
            echogenicity={"homogeneous": 0.3, "heterogeneous": 0.7}, boundary={"clear": 0.2, "unclear": 0.8}
        ),
    }


class SizeBin(StrictModel):
    """A tumour size bin: lesion size (longest side / image width) in [lo, hi]."""

    weight: Weight
    range: tuple[Finite, Finite]

    @field_validator("range")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0 < lo < hi <= 0.95):
            raise ValueError(f"empty or out-of-bounds range [{lo}, {hi}]; need 0 < lo < hi <= 0.95")
        return v


class RendererConfig(StrictModel):
    """`backend` picks a registered renderer; the other keys are its options, validated by it."""

    model_config = ConfigDict(extra="allow", frozen=True)
    backend: str = "procedural"

    @field_validator("backend")
    @classmethod
    def _known(cls, v: str) -> str:
        from busforge.renderers.base import RENDERERS

        if v not in RENDERERS:
            raise ValueError(f"unknown renderer {v!r}; allowed: {', '.join(sorted(RENDERERS))}")
        return v

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OutputConfig(StrictModel):
    dir: str = "data/out"
    rows_per_shard: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1000
    rows_per_row_group: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 100


class RealConfig(StrictModel):
    """Real data mixed into the train split at a real:synthetic ratio (see busforge.dataset.mix)."""

    dataset: str
    ratio: str = "1:1"

    @field_validator("ratio", mode="before")
    @classmethod
    def _quoted(cls, v: Any) -> Any:
        if isinstance(v, int):
            raise ValueError('write the ratio quoted, like "1:2" (unquoted YAML reads 1:2 as the number 62)')
        return v

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: str) -> str:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*", v)
        if not m or (float(m[1]) == 0 and float(m[2]) == 0):
            raise ValueError(f"ratio {v!r} is not 'REAL:SYNTHETIC' like '1:2', '0:1' or '1:0'")
        return f"{m[1]}:{m[2]}"


class Recipe(StrictModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    version: str = "0.1.0"
    seed: Annotated[int, Field(ge=0, lt=2**63, strict=True)] = 0
    count: Annotated[int, Field(ge=0, le=10_000_000, strict=True)]
    # One target domain, or several as relative weights ({busi: 1, udiat: 1}); each domain selects
    # its LoRA adapter in the diffusion renderer.
    domain: Annotated[str, Field(min_length=1)] | dict[str, Weight] = "busi"
    image_size: Annotated[int, Field(ge=64, le=2048, multiple_of=8, strict=True)] = 512
    pathology: dict[str, Weight] | Literal["match_real"] = {"benign": 0.6, "malignant": 0.4}
    size_bins: dict[str, SizeBin] | Literal["prior"] = Field(
        default_factory=lambda: {
            name: SizeBin(weight=1, range=bounds) for name, bounds in DEFAULT_SIZE_BINS.items()
        }
    )
    attributes: dict[str, PathologyAttributes] = Field(default_factory=_default_attributes)
    shape_prior: str = "birads"
    prompt_template: str = DEFAULT_PROMPT
    renderer: RendererConfig = RendererConfig()
    output: OutputConfig = OutputConfig()
    real: RealConfig | None = None
    license: str = "cc-by-4.0"
    description: str = ""
    _source: str = PrivateAttr(default="recipe")  # the file it came from, for error messages

    @property
    def source(self) -> str:
        return self._source

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not SEMVER.fullmatch(v):
            raise ValueError(f"{v!r} is not semver; use MAJOR.MINOR.PATCH like 1.0.0")
        return v

    @field_validator("domain")
    @classmethod
    def _domains(cls, v: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(v, dict):
            if not v or any(not name for name in v):
                raise ValueError("domain weights need at least one named domain")
            _check_sum(sum(v.values()), "domain weights")
        return v

    @property
    def domain_weights(self) -> dict[str, float]:
        return {self.domain: 1.0} if isinstance(self.domain, str) else dict(self.domain)

    @field_validator("pathology")
    @classmethod
    def _pathology(cls, v: dict[str, float] | str) -> dict[str, float] | str:
        return v if isinstance(v, str) else _check_weights(v, PATHOLOGIES)

    @field_validator("size_bins")
    @classmethod
    def _bins(cls, v: dict[str, SizeBin] | str) -> dict[str, SizeBin] | str:
        if isinstance(v, str):
            return v
        if not v:
            raise ValueError("at least one size bin is needed (or 'prior')")
        _check_sum(sum(b.weight for b in v.values()), "bin weights")
        ordered = sorted(v.items(), key=lambda kv: kv[1].range[0])
        for (n1, b1), (n2, b2) in zip(ordered, ordered[1:], strict=False):
            if b2.range[0] < b1.range[1]:
                raise ValueError(f"bins {n1!r} {list(b1.range)} and {n2!r} {list(b2.range)} overlap")
        return v

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: dict[str, PathologyAttributes]) -> dict[str, PathologyAttributes]:
        unknown = sorted(set(v) - set(PATHOLOGIES))
        if unknown:
            raise ValueError(f"unknown pathology {unknown}; allowed: {', '.join(PATHOLOGIES)}")
        # What a recipe leaves out keeps the clinical default, down to each attribute.
        defaults = _default_attributes()
        return {
            p: defaults[p].model_copy(update={f: getattr(v[p], f) for f in v[p].model_fields_set})
            if p in v
            else defaults[p]
            for p in PATHOLOGIES
        }

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, v: str) -> str:
        from busforge.prompts import check_template

        check_template(v)
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> Recipe:
        if self.pathology == "match_real" and self.real is None:
            raise ValueError("pathology: match_real needs a `real:` block naming the real dataset")
        if self.size_bins == "prior" and self.shape_prior == "birads":
            raise ValueError(
                "size_bins: prior needs a calibrated shape_prior (e.g. 'busi'); the birads prior has no "
                "fitted size distribution, so give explicit bins"
            )
        return self

    def content(self) -> dict[str, Any]:
        """The recipe as plain data (what the fingerprint hashes and `recipe.yaml` stores)."""
        return self.model_dump(mode="json")


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model that `loc` points into, for 'unknown key' messages."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:
            return None
        # Unwrap Optional/Union/dict[str, Model] down to a model class.
        while not (isinstance(current, type) and issubclass(current, BaseModel)):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                current = models[0]
            elif args and typing.get_origin(current) is dict:
                current = args[-1]
            elif args:
                current = args[0]
            else:
                break
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _describe(path: list[str], error: dict[str, Any]) -> str | None:
    """Unknown keys list the keys allowed where they were found."""
    if error["type"] != "extra_forbidden":
        return None
    allowed = _allowed_keys(Recipe, tuple(path[:-1]))
    return "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")


def _blamed_override(err: ValidationError, overrides: list[str]) -> str | None:
    """The `--set` argument that put the bad value there (the last one on its key path), if any."""
    loc = error_path(err.errors()[0])
    for text in reversed(overrides):
        path = text.split("=", 1)[0].split(".")
        if path[: len(loc)] == loc[: len(path)]:
            return text
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`key.path=value` -> (["key", "path"], value parsed as YAML)."""
    if "=" not in text:
        raise BadInput(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set count=100")
    key, raw = text.split("=", 1)
    if not key or any(not p for p in key.split(".")):
        raise BadInput(f"--set {text!r}: empty key; expected KEY.PATH=VALUE")
    if not raw.strip():
        return key.split("."), ""
    try:
        return key.split("."), load_yaml(raw, f"--set {key}")
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise BadInput(
            f"--set {key}: {problem} in value {raw[:80]!r}; give a YAML value like --set count=100 "
            "(quote text holding : [ { or #)"
        ) from None


def default_at(path: list[str]) -> Any:
    """The recipe's default value at a key path, as plain data (None where there is none)."""
    field = Recipe.model_fields.get(path[0])
    if field is None or field.is_required():
        return None
    node: Any = Recipe.model_construct().model_dump(mode="json").get(path[0])
    for part in path[1:]:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `key.path=value`; a mapping the recipe leaves out starts from its default, so
    `--set pathology.benign=0.7` changes one weight instead of dropping the others."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                default = default_at(path[: i + 1])
                child = node[part] = copy.deepcopy(default) if isinstance(default, dict) else {}
            if not isinstance(child, dict):
                raise BadInput(f"--set {text}: {'.'.join(path[: i + 1])} is not a mapping")
            node = child
        node[path[-1]] = value
    return data


def reject_ignored_count(recipe: Recipe, count: int | None) -> None:
    """`--count` sets the synthetic count only without real data or with ratio 0:N; say so
    rather than silently ignore it."""
    if count is not None and recipe.real is not None and float(recipe.real.ratio.split(":")[0]) != 0:
        raise BadInput(
            f"{recipe.source}: --count: with real.ratio {recipe.real.ratio} the synthetic count is the ratio "
            "times the real train rows; use --limit N for a quick run, or --set real.ratio=0:1 for synthetic only"
        )


def recipe_from_dict(data: Any, source: str = "<recipe>", overrides: list[str] | None = None) -> Recipe:
    """Validate recipe DATA read from SOURCE; a bad value that one of OVERRIDES set is blamed on it."""
    if not isinstance(data, dict):
        raise BadInput(
            f"{source}: (top level): a recipe is a YAML mapping of keys like name, count, renderer"
        )
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        blamed = _blamed_override(err, overrides or [])
        raise bad_input(err, source=f"--set {blamed}" if blamed else source, describe=_describe) from None
    recipe._source = source
    return recipe


def read_recipe_data(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"{path}: no such recipe file; give the path of a YAML recipe like recipes/demo.yaml")
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise BadInput(
            f"{path}: {size:,} bytes; a recipe is at most {MAX_RECIPE_BYTES // 2**20} MB of YAML (is this the right file?)"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text (byte {err.start}); save the recipe as UTF-8") from None
    try:
        data = load_yaml(text, str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BadInput(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    return data if data is not None else {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_extends(path: Path, data: Any, seen: tuple[Path, ...] = ()) -> Any:
    """`extends: other.yaml` (relative to this file) merges this file's keys over the other recipe's."""
    if not isinstance(data, dict) or "extends" not in data:
        return data
    data = dict(data)
    base_path = (path.parent / str(data.pop("extends"))).resolve()
    if base_path in seen:
        raise BadInput(f"{path}: extends: {base_path} extends itself (a cycle); remove one `extends`")
    if not base_path.is_file():
        raise BadInput(f"{path}: extends: no such recipe {base_path}; give a path relative to {path.parent}")
    base = resolve_extends(base_path, read_recipe_data(base_path), (*seen, base_path))
    if not isinstance(base, dict):
        raise BadInput(f"{base_path}: (top level): a recipe is a YAML mapping")
    return deep_merge(base, data)


# params.yaml is a recipe that also holds the settings of later DVC stages: not rendered, not
# part of the fingerprint.
STAGE_KEYS = ("downstream",)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, resolve `extends`, apply `--set` overrides and validate."""
    path = Path(path)
    data = resolve_extends(path, read_recipe_data(path), (path.resolve(),))
    if isinstance(data, dict):
        data = apply_overrides(data, overrides or [])
        data = {k: v for k, v in data.items() if k not in STAGE_KEYS}
    return recipe_from_dict(data, str(path), overrides)
