"""The model zoo manifest (model_zoo.yaml): one validated entry per documented table row.

The schema is strict (unknown fields are errors) so that a typo in the manifest fails loudly
when it is loaded instead of silently changing a test protocol.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import functools
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from repro.datasets.registry import DATASETS
from repro.errors import ManifestError, UnknownModelError
from repro.fileio import atomic_write_text

DEFAULT_PATH = Path(__file__).with_name("model_zoo.yaml")
PROTOCOL_NAMES = ("single", "flip", "ms+flip")
# one document per method: the MCIBI paper's model zoo and the MemoryNetV2 (MCIBI++) one
DOCUMENT_TITLES = {"mcibi": "MCIBI (ICCV 2021)", "memorynetv2": "MemoryNetV2 / MCIBI++ (TPAMI 2022)"}
# selectable forwards of a checkpoint: the network as it was trained, or as upstream's code builds it today
VARIANT_NAMES = ("training-era", "upstream-head")

Pair = Annotated[list[int], Field(min_length=2, max_length=2)]
Triple = Annotated[list[float], Field(min_length=3, max_length=3)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resize(_Strict):
    output_size: Pair
    keep_ratio: bool


class Normalize(_Strict):
    mean: Triple
    std: Triple


class Protocol(_Strict):
    """Upstream's test settings for one protocol of one config (sizes are (height, width))."""

    upstream_block: str
    resize: Resize
    normalize: Normalize
    mode: Literal["whole", "slide"]
    crop_size: Pair | None
    stride: Pair | None
    scales: Annotated[list[float], Field(min_length=1)]
    flip: bool
    flip_pairs: list[Pair]
    probs_before_resize: bool

    @model_validator(mode="after")
    def _slide_needs_window(self):
        if self.mode == "slide" and (self.crop_size is None or self.stride is None):
            raise ValueError("slide inference needs crop_size and stride")
        return self


class Schedule(_Strict):
    lr: float
    policy: str
    batch_size: int
    epochs: int


def _at_least_one_protocol(documented: dict) -> dict:
    if not documented:
        raise ValueError("must name at least one protocol")
    return documented


TF32_USE = ("yes", "no", "unknown", "likely")


def _check_date(value: str) -> str:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a date (YYYY-MM-DD)") from None
    return value


class Evidence(_Strict):
    """One fact from upstream's history: a commit, its date, the file, a short quote of it."""

    commit: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    file: str = Field(min_length=1)
    quote: str = Field(min_length=1, max_length=200)

    _real_date = field_validator("date")(_check_date)


class Conditions(_Strict):
    """How one documented number was most likely computed: the GPU and the TF32 switches."""

    gpu: str = Field(min_length=1)  # as upstream states it, or "unknown"
    tf32_conv: Literal[TF32_USE]  # type: ignore[valid-type]
    tf32_matmul: Literal[TF32_USE]  # type: ignore[valid-type]
    reason: str = Field(min_length=1)
    evidence: Annotated[list[Evidence], Field(min_length=1)]  # the number's own commit first

    def summary(self) -> str:
        """'GPU A100, TF32 conv likely, matmul unknown' -- what a reader needs first."""
        return f"GPU {self.gpu}, TF32 conv {self.tf32_conv}, matmul {self.tf32_matmul}"


def _conditions_cover(conditions: dict, numbers: dict, what: str) -> dict:
    """Conditions, when given, exist for exactly the protocols that have a number."""
    if conditions:
        wanted = {p for p, v in numbers.items() if v is not None}
        if set(conditions) != wanted:
            raise ValueError(f"{what} must cover the protocols with a number ({', '.join(sorted(wanted)) or 'none'}), "
                             f"not {', '.join(sorted(conditions))}")
    return conditions


class UpstreamNow(_Strict):
    """Upstream's current numbers for a row, where they differ from the document's."""

    documented: dict[Literal[PROTOCOL_NAMES], float | None]  # type: ignore[valid-type]
    commit: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    note: str = Field(min_length=1)
    # per protocol with a number: how it was computed (absent in older hand-written manifests)
    conditions: dict[Literal[PROTOCOL_NAMES], Conditions] = {}  # type: ignore[valid-type]

    @field_validator("documented")
    @classmethod
    def _names_a_protocol(cls, value):
        return _at_least_one_protocol(value)

    _real_date = field_validator("date")(_check_date)

    @model_validator(mode="after")
    def _conditions_match_numbers(self):
        _conditions_cover(self.conditions, self.documented, "upstream_now.conditions")
        return self

    def summary(self) -> str:
        """'50.08 / 51.63 (2025-09-30, 9e983890): why' -- the numbers in protocol order."""
        numbers = " / ".join("blank" if v is None else f"{v:.2f}" for v in self.documented.values())
        return f"{numbers} ({self.date}, {self.commit}): {self.note}"


class ModelEntry(_Strict):
    id: str
    aliases: list[str] = []
    method: Literal["mcibi", "memorynetv2"]
    document: str
    section: str
    table: str
    segmentor: str
    head: Literal["aspp", "ppm", "upernet", "fcn"]
    backbone: str
    backbone_id: str
    pretrain: str | None
    crop_size: Pair
    schedule: Schedule
    dataset: str  # a name of repro.datasets.registry.DATASETS (checked when validated)
    train_split: str
    eval_split: str
    num_classes: int = Field(gt=0)
    upstream_config: str
    # first = default; omitted in a hand-written manifest means upstream's current forward only
    variants: list[Literal[VARIANT_NAMES]] = Field(default=["upstream-head"], min_length=1)  # type: ignore[valid-type]
    documented: dict[Literal[PROTOCOL_NAMES], float | None]  # type: ignore[valid-type]
    # per documented number: the GPU and TF32 use behind it (absent in older hand-written manifests)
    documented_conditions: dict[Literal[PROTOCOL_NAMES], Conditions] = {}  # type: ignore[valid-type]
    protocols: dict[Literal[PROTOCOL_NAMES], Protocol]  # type: ignore[valid-type]
    # declared after documented and protocols so that its validator can compare with them
    upstream_now: UpstreamNow | None = None
    weights: list[str]
    config: list[str]
    log: list[str]
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    eval: Literal["local", "server"]
    notes: list[str] = []

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value):
        if value not in DATASETS:  # the registry as it is now: a dataset added at run time counts
            names = [repr(name) for name in DATASETS]
            expected = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    @field_validator("documented")
    @classmethod
    def _documented_not_empty(cls, value):
        return _at_least_one_protocol(value)

    @field_validator("variants")
    @classmethod
    def _variants_unique(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("lists a variant twice")
        return value

    @model_validator(mode="after")
    def _documented_conditions_match(self):
        _conditions_cover(self.documented_conditions, self.documented, "documented_conditions")
        return self

    @model_validator(mode="after")
    def _documented_protocols_have_settings(self):
        missing = [p for p in self.documented if p not in self.protocols]
        if missing:
            raise ValueError(f"documented protocol(s) {', '.join(missing)} have no settings under 'protocols'")
        return self

    @field_validator("upstream_now")
    @classmethod
    def _upstream_now_adds_something(cls, now, info: ValidationInfo):
        if now is None:
            return now
        missing = [p for p in now.documented if p not in info.data.get("protocols", now.documented)]
        if missing:
            raise ValueError(f"protocol(s) {', '.join(missing)} have no settings under 'protocols'")
        if now.documented == info.data.get("documented"):
            raise ValueError("repeats the documented numbers; drop it")
        return now

    @property
    def names(self) -> list[str]:
        """The id and every alias."""
        return [self.id, *self.aliases]

    @property
    def document_title(self) -> str:
        """The title of the document the row comes from, as a person names it (not its file name)."""
        return DOCUMENT_TITLES[self.method]

    @property
    def default_variant(self) -> str:
        """The forward used unless another is asked for: the first of `variants`."""
        return self.variants[0]


class Manifest(_Strict):
    schema_version: Literal[1]
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _unique_names(self):
        seen: dict[str, str] = {}
        for entry in self.models:
            for name in entry.names:
                if name in seen:
                    raise ValueError(f"duplicate id or alias '{name}' (entries '{seen[name]}' and '{entry.id}')")
                seen[name] = entry.id
        return self

    @property
    def entries(self) -> list[ModelEntry]:
        return self.models

    def ids(self) -> list[str]:
        return [e.id for e in self.models]

    def get(self, name: str) -> ModelEntry:
        """The entry whose id or alias is `name`, in any case (as dataset names); UnknownModelError
        with suggestions otherwise."""
        for entry in self.models:
            if name in entry.names:
                return entry
        wanted = name.strip().lower()
        for entry in self.models:
            if wanted in (n.lower() for n in entry.names):
                return entry
        raise UnknownModelError(unknown_model_message(name, self.models))


def unknown_model_message(name: str, entries: list[ModelEntry]) -> str:
    by_name = {n.lower(): e.id for e in entries for n in e.names}
    close = difflib.get_close_matches(name.strip().lower(), list(by_name), n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys(by_name[n] for n in close))[:3]
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else "; run 'repro list' to see all ids"
    return f"unknown model id '{name}'{hint}"


def _describe(err: ValidationError, raw: dict) -> str:
    """One line naming the entry and the field of the first validation error."""
    first = err.errors()[0]
    loc = list(first["loc"])
    where = "manifest"
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        models = raw.get("models") or []
        entry = models[loc[1]] if loc[1] < len(models) and isinstance(models[loc[1]], dict) else {}
        where = f"entry '{entry.get('id', f'#{loc[1]}')}'"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc) or "(entry)"
    return f"{where}, field '{field}': {first['msg']}"


# libyaml's safe loader parses the 100 kB manifest ~4x faster than the pure-Python one (start-up time)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# JSON copies of the bundled manifest's data, named by the YAML text's digest, like bytecode
_DATA_CACHE = Path(__file__).with_name("__pycache__")


def _yaml_data(text: str, cache_dir: Path | None):
    """The YAML's data. With `cache_dir`, a JSON copy (10x faster to read) spares the parse next
    time; validation still runs on it. Best effort: an unwritable folder only costs the speed."""
    cached = cache_dir / f"model_zoo.{hashlib.sha256(text.encode()).hexdigest()[:20]}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        with contextlib.suppress(OSError, ValueError):
            return json.loads(cached.read_text(encoding="utf-8"))
    raw = yaml.load(text, Loader=_YAML_LOADER)
    if cached is not None and not sys.dont_write_bytecode:
        with contextlib.suppress(OSError, TypeError, ValueError):
            dumped = json.dumps(raw)
            if json.loads(dumped) == raw:  # e.g. a YAML date would not survive: then no copy
                atomic_write_text(cached, dumped)
    return raw


def parse_manifest(text: str, source: str = "model_zoo.yaml", data_cache: Path | None = None) -> Manifest:
    try:
        raw = _yaml_data(text, data_cache)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ManifestError(f"{source}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: expected a mapping with 'schema_version' and 'models'")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        raise ManifestError(f"{source}: {_describe(err, raw)}") from None


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> Manifest:
    bundled = path == str(DEFAULT_PATH.resolve())
    return parse_manifest(Path(path).read_text(encoding="utf-8"), source=path, data_cache=_DATA_CACHE if bundled else None)


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
    """Load and validate a manifest (the bundled one by default, or $REPRO_MANIFEST)."""
    path = Path(path or os.environ.get("REPRO_MANIFEST") or DEFAULT_PATH)
    try:
        stat = path.stat()
    except OSError:
        raise ManifestError(f"manifest not found: {path}") from None
    return _load_cached(str(path.resolve()), stat.st_mtime_ns)


def ordered_protocols(names: Iterable[str]) -> list[str]:
    """Protocol names once each, in PROTOCOL_NAMES order, unknown names after them, sorted."""
    unique = set(names)
    return [p for p in PROTOCOL_NAMES if p in unique] + sorted(unique - set(PROTOCOL_NAMES))


def field_of(record: Any, name: str, default: Any = None) -> Any:
    """A field of a manifest record (a pydantic model, a dataclass) or of its dict form."""
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)
