"""CTranslate2 export of the dense deployables, and decoding with an export under the project's rules.

A dense `Seq2Seq` (routing `none`, or `fused`: an extracted sub-network whose FFN at former MoE positions
is `top_k * d_ff` wide) is written as a CTranslate2 `TransformerSpec` built with `ctranslate2.specs`.
Every detail of `pipeline/model` maps onto the spec:

| the project's model                                  | the CTranslate2 spec                              |
|------------------------------------------------------|---------------------------------------------------|
| pre-LN layers, a final LayerNorm per side             | `pre_norm=True`, `layer_norm`; the modules' eps as `layer_norm_epsilon` |
| one embedding for source and target, scaled by sqrt(D), tied with the output projection | `encoder.embeddings[0]`, `decoder.embeddings` and `decoder.projection` get the same matrix (saved once: CTranslate2 aliases equal variables), `scale_embeddings`, no projection bias |
| sinusoidal positions, sin/cos interleaved, frequencies 10000^(-2i/D) | a stored table `position_encodings.encodings` made by the model's own `sinusoidal_positions` (CTranslate2's built-in sinusoid concatenates sin and cos with another frequency formula) |
| attention: q, k, v, out (Linear with bias), 1/sqrt(Dh) | self-attention `linear[0] = [q; k; v]`, `linear[1] = out`; cross-attention `linear[0] = q`, `linear[1] = [k; v]`, `linear[2] = out` |
| ReLU FFN `w_in`, `w_out`, any width per layer         | `ffn.linear_0`, `ffn.linear_1`, `Activation.RELU` (each layer keeps its own shapes) |
| source `<2tgt> pieces </s>`                           | the same tokens, passed explicitly (`add_source_bos/eos` off) |
| decoding starts from bos, stops at eos; pad and bos never generated | `decoder_start_token` = bos, end token eos, `suppress_sequences` [[pad], [bos]], `min_decoding_length` 0 |
| at most max(1, min(int(a * src_len + b), max_positions)) generated tokens, counting the eos | greedy: `max_decoding_length` = the batch's largest limit and each hypothesis cut at its own (greedy's first L tokens do not depend on a longer limit); beam: one call per limit |

So in float32 CTranslate2's greedy search computes the project's greedy search (`tests/serve` checks the
translations, every direction of tiny trained models). Beam search is CTranslate2's own (hypothesis
scores divided by length ** alpha where the project uses GNMT's ((5 + length) / 6) ** alpha, another
stopping rule): its outputs are measured (BLEU), not claimed equal. int8 (weights int8, activations
float32) is an approximation whose BLEU change is measured (`pipeline.benchmark`, `taskmoe export --check`).

An MoE layer has no exact dense form: a token- or sentence-routed layer picks experts from the input at
run time, and an unextracted task-routed layer holds every task's experts. Such models are refused with
the reason (`refusal`); a task-MoE is exported through its extracted sub-networks, which are dense only
when both sides are task-routed (or unrouted): extraction keeps a token-routed encoder's experts.

An export folder (`taskmoe export --format ctranslate2`) holds `export.json` (`EXPORT_FILE`, below),
`spm.model` (the SentencePiece model: tokenise, prepend `<2tgt>`, append `</s>`), and either one
CTranslate2 model (`model.bin`, `config.json`, `shared_vocabulary.json`) at its top, loadable as
`ctranslate2.Translator(folder)`, or for sub-networks one such model per task key in `<key>/`.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

EXPORT_FILE = "export.json"
EXPORT_FORMAT = 1
VOCAB_FILE = "spm.model"
QUANTIZATIONS = ("float32", "int8")
# compute type each stored quantization is run with (int8: int8 weights and GEMMs, float32 elsewhere)
COMPUTE_TYPES = {"float32": "float32", "int8": "int8_float32"}
DEFAULT_MAX_SOURCE_TOKENS = 1024  # rows of the stored position table (CTranslate2's own default input cap)


# --------------------------------------------------------------------------------------------------
# what can be exported


class ExportRefused(PipelineError):
    """The model has no exact dense form (MoE layers); the message says why and what to export instead."""


def refusal(cfg, where: str) -> Optional[str]:
    """None when `cfg` (a `Seq2SeqConfig`) is a dense Transformer CTranslate2 describes exactly, else
    the one-line reason it cannot be exported."""
    from pipeline.config import TASK_ROUTINGS

    sides = {side: cfg.routing(side) for side in ("encoder", "decoder")}
    dynamic = [f"{side} ({routing}-routed)" for side, routing in sides.items()
               if routing in ("token", "sentence")]
    task = [f"{side} ({routing}-routed)" for side, routing in sides.items() if routing in TASK_ROUTINGS]
    if not dynamic and not task:
        return None
    fused = [side for side, routing in sides.items() if routing == "fused"]
    head = (f"cannot export {where} to CTranslate2 exactly: CTranslate2's encoder-decoder Transformer "
            "has dense FFNs only, and")
    if dynamic and fused:
        return (f"{head} this sub-network keeps the MoE layers of its {', '.join(dynamic)}: they pick "
                "their experts from each input at run time, so extraction kept them; only a task-MoE "
                "whose routed sides are all task-routed (e.g. models.task_moe: {encoder_routing: "
                "target, decoder_routing: target}) has fully dense sub-networks")
    if dynamic:
        return (f"{head} this model has MoE layers in its {', '.join(dynamic + task)}: a token- or "
                "sentence-routed layer picks its experts from each input at run time, which no dense "
                "network computes; export the distilled student (models/student) or a dense model instead")
    return (f"{head} this task-MoE has not been extracted: its {', '.join(task)} layers hold every "
            "task's experts; export the extract stage's output (models/task_moe_sub), whose per-task "
            "sub-networks are dense")


def check_vocab(vocab, cfg, where: str) -> None:
    """The SentencePiece model must be the one the model was trained with (size, special ids, tags)."""
    if vocab.size != cfg.vocab_size:
        raise PipelineError(f"{vocab.path}: has {vocab.size} pieces but {where} expects {cfg.vocab_size}; "
                            "pass the spm.model of the corpus the model was trained on")
    for name in ("pad_id", "bos_id", "eos_id"):
        if getattr(vocab, name) != getattr(cfg, name):
            raise PipelineError(f"{vocab.path}: {name} is {getattr(vocab, name)} but {where} expects "
                                f"{getattr(cfg, name)}")
    missing = [lang for lang in cfg.languages if lang not in vocab.languages]
    if missing:
        raise PipelineError(f"{vocab.path}: no tag for {', '.join(missing)}, which {where} translates into")


# --------------------------------------------------------------------------------------------------
# the spec


def _numpy(tensor):
    return tensor.detach().to("cpu", dtype=__import__("torch").float32).contiguous().numpy()


def _linear(spec, *modules) -> None:
    """`spec` gets the modules' weights (and biases) stacked along the output dimension."""
    import numpy as np

    spec.weight = np.concatenate([_numpy(m.weight) for m in modules], axis=0)
    spec.bias = np.concatenate([_numpy(m.bias) for m in modules], axis=0)


def _layer_norm(spec, module) -> None:
    spec.gamma = _numpy(module.weight)
    spec.beta = _numpy(module.bias)


def build_spec(model, tokens: Sequence[str], positions: int):
    """The `TransformerSpec` of a dense `Seq2Seq` (see the module docstring); `tokens[i]` is id i."""
    import torch
    from ctranslate2.specs import common_spec, transformer_spec

    from pipeline.model.transformer import sinusoidal_positions

    cfg = model.cfg
    why = refusal(cfg, "this model")
    if why:
        raise ExportRefused(why)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    eps = {m.eps for m in norms}
    if len(eps) != 1 or any(not m.elementwise_affine for m in norms):
        raise PipelineError(f"cannot export: LayerNorms differ in eps or affinity ({sorted(eps)})")
    relu = common_spec.Activation.RELU
    encoder = transformer_spec.TransformerEncoderSpec(cfg.encoder_layers, cfg.num_heads, pre_norm=True,
                                                      activation=relu)
    decoder = transformer_spec.TransformerDecoderSpec(cfg.decoder_layers, cfg.num_heads, pre_norm=True,
                                                      activation=relu)
    embedding = _numpy(model.embed.weight)  # one array: CTranslate2 stores it once and aliases the rest
    table = sinusoidal_positions(torch.arange(positions), cfg.d_model).numpy()
    encoder.embeddings[0].weight = embedding
    decoder.embeddings.weight = embedding
    decoder.projection.weight = embedding  # tied output projection, no bias
    encoder.scale_embeddings = True  # x = embedding * sqrt(d_model) + position
    decoder.scale_embeddings = True
    encoder.position_encodings.encodings = table
    decoder.position_encodings.encodings = table
    _layer_norm(encoder.layer_norm, model.encoder.final_norm)
    _layer_norm(decoder.layer_norm, model.decoder.final_norm)
    for spec, layer in zip(encoder.layer, model.encoder.layers):
        attn = layer.self_attn
        _layer_norm(spec.self_attention.layer_norm, layer.self_attn_norm)
        _linear(spec.self_attention.linear[0], attn.q, attn.k, attn.v)
        _linear(spec.self_attention.linear[1], attn.out)
        _layer_norm(spec.ffn.layer_norm, layer.ffn_norm)
        _linear(spec.ffn.linear_0, layer.ffn.w_in)
        _linear(spec.ffn.linear_1, layer.ffn.w_out)
    for spec, layer in zip(decoder.layer, model.decoder.layers):
        attn, cross = layer.self_attn, layer.cross_attn
        _layer_norm(spec.self_attention.layer_norm, layer.self_attn_norm)
        _linear(spec.self_attention.linear[0], attn.q, attn.k, attn.v)
        _linear(spec.self_attention.linear[1], attn.out)
        _layer_norm(spec.attention.layer_norm, layer.cross_attn_norm)
        _linear(spec.attention.linear[0], cross.q)
        _linear(spec.attention.linear[1], cross.k, cross.v)
        _linear(spec.attention.linear[2], cross.out)
        _layer_norm(spec.ffn.layer_norm, layer.ffn_norm)
        _linear(spec.ffn.linear_0, layer.ffn.w_in)
        _linear(spec.ffn.linear_1, layer.ffn.w_out)
    spec = transformer_spec.TransformerSpec(encoder, decoder)
    config = spec.config
    config.layer_norm_epsilon = float(eps.pop())
    config.bos_token = tokens[cfg.bos_id]
    config.eos_token = tokens[cfg.eos_id]
    config.decoder_start_token = tokens[cfg.bos_id]
    config.add_source_bos = False  # the source tokens are passed whole: <2tgt> ... </s>
    config.add_source_eos = False
    spec.register_source_vocabulary(list(tokens))
    spec.register_target_vocabulary(list(tokens))
    return spec


def _unk_token(vocab) -> str:
    return vocab.tokens[vocab.unk_id] if getattr(vocab, "unk_id", -1) >= 0 else "<unk>"


def write_model(model, vocab, out_dir: Path, quantization: str, positions: int) -> None:
    """Convert one dense `Seq2Seq` into the CTranslate2 model folder `out_dir` (through the library's
    `Converter`: validate, optimise/quantise, save)."""
    from ctranslate2.converters.converter import Converter

    tokens = vocab.tokens
    spec = build_spec(model, tokens, positions)
    spec.config.unk_token = _unk_token(vocab)

    class _Loaded(Converter):
        def _load(self):
            return spec

    _Loaded().convert(str(out_dir), quantization=quantization, force=True)


# --------------------------------------------------------------------------------------------------
# exporting a model folder


def _model_folders(model_dir: Path) -> tuple[str, dict[str, tuple[Path, list[str]]], list[str]]:
    """('single' | 'subnetworks', {key: (checkpoint folder, directions)}, languages) of a model folder."""
    from pipeline.extract import MANIFEST_FILE, ExtractedModels
    from pipeline.model.checkpoint import load_config

    if not model_dir.is_dir():
        raise PipelineError(f"{model_dir}: model folder not found")
    if (model_dir / MANIFEST_FILE).exists():
        extracted = ExtractedModels(model_dir)
        manifest, langs = extracted.manifest, extracted.languages
        routes = {}  # every ordered pair a sub-network serves, as `ExtractedModels.task_for` routes it
        for direction in (f"{s}-{t}" for s in langs for t in langs if s != t):
            try:
                routes[direction] = extracted.task_for(*direction.split("-"))
            except PipelineError:
                pass  # no sub-network for this pair
        tasks = {key: (model_dir / entry["folder"], sorted(d for d, k in routes.items() if k == key))
                 for key, entry in manifest["tasks"].items()}
        return "subnetworks", tasks, langs
    if (model_dir / EXPORT_FILE).exists():
        raise PipelineError(f"{model_dir}: is already a CTranslate2 export; export the pipeline's model "
                            "folder it was made from")
    cfg = load_config(model_dir)
    langs = cfg.languages
    return "single", {"model": (model_dir, [f"{s}-{t}" for s in langs for t in langs if s != t])}, langs


def export_ctranslate2(model_dir: str | Path, out_dir: str | Path, vocab, quantization: str = "float32",
                       max_source_tokens: int = DEFAULT_MAX_SOURCE_TOKENS) -> dict:
    """Export a model folder (one checkpoint, or the sub-networks of `models/task_moe_sub`) to `out_dir`,
    atomically; return the index written as `export.json`. A model with MoE layers is refused (`refusal`)
    before anything is written."""
    import ctranslate2

    from pipeline.io import atomic_dir, write_json
    from pipeline.model.checkpoint import load_checkpoint, load_config

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if quantization not in QUANTIZATIONS:
        raise PipelineError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if max_source_tokens < 1:
        raise PipelineError(f"max_source_tokens must be >= 1, got {max_source_tokens}")
    kind, folders, languages = _model_folders(model_dir)
    configs = {}
    for key, (folder, _) in folders.items():  # every refusal before any weight is read or file written
        cfg = load_config(folder)
        why = refusal(cfg, str(folder))
        if why:
            raise ExportRefused(why)
        check_vocab(vocab, cfg, str(folder / "config.json"))
        configs[key] = cfg
    models, routes = {}, {}
    with atomic_dir(out_dir) as tmp:
        for key, (folder, directions) in folders.items():
            cfg = configs[key]
            positions = max(max_source_tokens, cfg.max_positions)
            target = tmp if kind == "single" else tmp / key
            model = load_checkpoint(folder)
            write_model(model, vocab, target, quantization, positions)
            models[key] = {"folder": "." if kind == "single" else key, "directions": directions,
                           "checkpoint": str(folder), "max_positions": cfg.max_positions,
                           "parameters": model.parameter_count().total,
                           "weights_bytes": (target / "model.bin").stat().st_size}
            routes.update({direction: key for direction in directions})
            log.info("exported %s (%s) to CTranslate2 %s", folder, ", ".join(directions), quantization)
        shutil.copyfile(vocab.path, tmp / VOCAB_FILE)
        tokens = vocab.tokens
        index = {
            "format": EXPORT_FORMAT,
            "engine": "ctranslate2",
            "ctranslate2_version": ctranslate2.__version__,
            "quantization": quantization,
            "compute_type": COMPUTE_TYPES[quantization],
            "source": str(model_dir),
            "kind": kind,
            "languages": languages,
            "vocabulary": VOCAB_FILE,
            "special_tokens": {"pad": tokens[vocab.pad_id], "bos": tokens[vocab.bos_id],
                               "eos": tokens[vocab.eos_id], "unk": _unk_token(vocab)},
            "source_format": "<2tgt> + SentencePiece pieces + eos",
            "max_source_tokens": max_source_tokens,
            "routes": routes,
            "models": models,
        }
        write_json(tmp / EXPORT_FILE, index)
    return index


# --------------------------------------------------------------------------------------------------
# decoding with an export


def length_limits(lengths: Sequence[int], max_len_a: float, max_len_b: int, max_positions: int) -> list[int]:
    """The project's per-sentence limits (`pipeline.decode.translate` and `_limits`)."""
    return [max(1, min(int(max_len_a * n + max_len_b), max_positions)) for n in lengths]


def decode_options(tokens: Sequence[str], pad_id: int, bos_id: int) -> dict:
    """`translate_batch` options for the project's rules: the source is passed whole, eos may come first,
    pad and bos are never generated, the end token is not returned."""
    return dict(suppress_sequences=[[tokens[pad_id]], [tokens[bos_id]]], min_decoding_length=0,
                max_input_length=0, return_end_token=False)


def decode_pieces(translator, source: Sequence[Sequence[str]], limits: Sequence[int], beam_size: int,
                  length_penalty: float, options: dict) -> list[list[str]]:
    """CTranslate2 decoding of source pieces (`<2tgt> ... </s>`) -> generated pieces (no bos, no eos),
    at most `limits[i]` each (module docstring: greedy in one call, beam search one call per limit)."""
    if not source:
        return []
    out: list[list[str]] = [[] for _ in source]
    if beam_size == 1:
        groups = {max(limits): list(range(len(source)))}
    else:
        groups = {}
        for i, limit in enumerate(limits):
            groups.setdefault(limit, []).append(i)
    for limit, members in groups.items():
        results = translator.translate_batch([source[i] for i in members], beam_size=beam_size,
                                             length_penalty=length_penalty, max_decoding_length=limit,
                                             **options)
        for i, result in zip(members, results):
            out[i] = result.hypotheses[0][: limits[i]]
    return out


def decode_ids(translator, tokens: Sequence[str], rows: Sequence[Sequence[int]], limits: Sequence[int],
               beam_size: int, length_penalty: float, pad_id: int, bos_id: int) -> list[list[int]]:
    """`decode_pieces` with ids in and out (`tokens[i]` is the piece of id i)."""
    index = {piece: i for i, piece in enumerate(tokens)}
    source = [[tokens[i] for i in row] for row in rows]
    hyps = decode_pieces(translator, source, limits, beam_size, length_penalty,
                         decode_options(tokens, pad_id, bos_id))
    return [[index[piece] for piece in hyp] for hyp in hyps]


def load_translator(folder: str | Path, quantization: str, device: str = "cpu", threads: int = 0):
    """A `ctranslate2.Translator` on one exported model folder; a damaged folder is a `PipelineError`."""
    import ctranslate2

    try:
        return ctranslate2.Translator(str(folder), device=device, compute_type=COMPUTE_TYPES[quantization],
                                      inter_threads=1, intra_threads=threads)
    except Exception as exc:  # the library raises RuntimeError, IndexError, ... for a damaged model.bin
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PipelineError(f"{folder}: cannot load the CTranslate2 model ({reason})") from None


class ExportedModels:
    """A `taskmoe export --format ctranslate2` folder: which model serves each direction, and decoding."""

    def __init__(self, folder: str | Path, device: str = "cpu", threads: int = 0):
        from pipeline.data.vocab import Vocab
        from pipeline.io import read_json

        self.folder = Path(folder)
        self.index = read_json(self.folder / EXPORT_FILE)
        required = ("engine", "quantization", "languages", "routes", "models", "max_source_tokens")
        missing = [key for key in required if key not in self.index]
        if self.index.get("format") != EXPORT_FORMAT or missing or self.index.get("engine") != "ctranslate2":
            raise PipelineError(f"{self.folder / EXPORT_FILE}: not a CTranslate2 export of format "
                                f"{EXPORT_FORMAT} (missing: {', '.join(missing) or 'none'}); export again")
        self.quantization = self.index["quantization"]
        if self.quantization not in QUANTIZATIONS:
            raise PipelineError(f"{self.folder / EXPORT_FILE}: unknown quantization {self.quantization!r}")
        self.languages = list(self.index["languages"])
        self.vocab = Vocab(self.folder / self.index.get("vocabulary", VOCAB_FILE))
        self.device, self.threads = device, threads
        self._translators: dict[str, object] = {}

    def key_for(self, src_lang: str, tgt_lang: str) -> str:
        direction = f"{src_lang}-{tgt_lang}"
        key = self.index["routes"].get(direction)
        if key is None or key not in self.index["models"]:
            raise PipelineError(f"{self.folder / EXPORT_FILE}: no model serves {direction} (have: "
                                f"{', '.join(sorted(self.index['routes']))})")
        return key

    def entry(self, src_lang: str, tgt_lang: str) -> dict:
        return self.index["models"][self.key_for(src_lang, tgt_lang)]

    def translator_for(self, src_lang: str, tgt_lang: str):
        key = self.key_for(src_lang, tgt_lang)
        if key not in self._translators:
            folder = self.folder / self.index["models"][key]["folder"]
            self._translators[key] = load_translator(folder, self.quantization, self.device, self.threads)
        return self._translators[key]

    def weights_bytes(self, src_lang: str, tgt_lang: str) -> int:
        return int(self.entry(src_lang, tgt_lang)["weights_bytes"])

    def translate(self, sources: list[str], src_lang: str, tgt_lang: str, cfg,
                  progress: Optional[Callable[[int], None]] = None) -> list[str]:
        """Text in, text out, as `pipeline.decode.translate` (same batches by token budget, same limits)."""
        from pipeline.decode import token_batches

        vocab = self.vocab
        for lang in (src_lang, tgt_lang):
            if lang not in self.languages:
                raise PipelineError(f"language {lang!r} is not one the model knows ({', '.join(self.languages)})")
        translator = self.translator_for(src_lang, tgt_lang)
        max_positions = int(self.entry(src_lang, tgt_lang)["max_positions"])
        cap = int(self.index["max_source_tokens"])
        encoded = [vocab.encode_source(text, tgt_lang) for text in sources]
        for i, ids in enumerate(encoded):
            if len(ids) > cap:
                raise PipelineError(f"sentence {i + 1} has {len(ids)} tokens but this export holds positions "
                                    f"for {cap} (export again with a larger --max-source-tokens)")
        results = [""] * len(sources)
        tokens = vocab.tokens
        for batch in token_batches([len(e) for e in encoded], cfg.batch_tokens, cfg.beam_size):
            rows = [encoded[i] for i in batch]
            limits = length_limits([len(r) for r in rows], cfg.max_len_a, cfg.max_len_b, max_positions)
            hyps = decode_ids(translator, tokens, rows, limits, cfg.beam_size, cfg.length_penalty,
                              vocab.pad_id, vocab.bos_id)
            for i, ids in zip(batch, hyps):
                results[i] = vocab.decode(ids)
            if progress is not None:
                progress(len(batch))
        return results


# --------------------------------------------------------------------------------------------------
# checks: exactness (float32 greedy) and quality (BLEU of any export)


def greedy_cfg(cfg=None):
    """`cfg` (a DecodeConfig; default: its defaults) with greedy search."""
    from pipeline.config import DecodeConfig

    return dataclasses.replace(cfg or DecodeConfig(), beam_size=1)


def compare_with_pytorch(model_dir: str | Path, export: ExportedModels, pairs: dict[str, list], vocab,
                         cfg=None) -> dict:
    """The export's greedy translations against the project's own greedy decode (`pipeline.decode`) of
    the same sources, and both corpus BLEU scores.

    `pairs`: {direction: [Pair]}. Returns {"decode": "greedy", "quantization", "sentences",
    "mismatches", "bleu_pytorch", "bleu_export", "bleu_change" (export - pytorch; means over
    directions), "directions": {d: {"sentences", "mismatches", "first_mismatch", "bleu_pytorch",
    "bleu_export"}}}; first_mismatch is null or {"line", "pytorch", "export"}."""
    from pipeline.decode import translate
    from pipeline.evaluate import score_direction
    from pipeline.extract import load_deployable

    deployable = load_deployable(model_dir)
    greedy = greedy_cfg(cfg)
    out = {}
    for direction, rows in pairs.items():
        src, tgt = direction.split("-")
        sources, refs = [p.source for p in rows], [p.target for p in rows]
        expected = translate(deployable.model_for(src, tgt), vocab, sources, src, tgt, greedy)
        actual = export.translate(sources, src, tgt, greedy)
        wrong = [i for i, (a, b) in enumerate(zip(expected, actual)) if a != b]
        first = ({"line": wrong[0] + 1, "pytorch": expected[wrong[0]], "export": actual[wrong[0]]}
                 if wrong else None)
        out[direction] = {"sentences": len(sources), "mismatches": len(wrong), "first_mismatch": first,
                          "bleu_pytorch": score_direction(expected, refs, tgt)["bleu"],
                          "bleu_export": score_direction(actual, refs, tgt)["bleu"]}
    mean = lambda key: sum(d[key] for d in out.values()) / len(out) if out else None  # noqa: E731
    result = {"decode": "greedy", "quantization": export.quantization,
              "sentences": sum(d["sentences"] for d in out.values()),
              "mismatches": sum(d["mismatches"] for d in out.values()),
              "bleu_pytorch": mean("bleu_pytorch"), "bleu_export": mean("bleu_export")}
    result["bleu_change"] = (result["bleu_export"] - result["bleu_pytorch"]) if out else None
    result["directions"] = out
    return result


def check_export(model_dir: str | Path, export_dir: str | Path, corpus_dir: str | Path, vocab,
                 max_sentences: Optional[int] = None, threads: int = 0) -> dict:
    """`compare_with_pytorch` on every direction the export serves among the corpus's test directions."""
    export = ExportedModels(export_dir, threads=threads)
    from pipeline.io import read_json

    directions = [d for d in read_json(Path(corpus_dir) / "meta.json").get("directions") or []
                  if d in export.index["routes"]]
    if not directions:
        raise PipelineError(f"{Path(corpus_dir) / 'meta.json'}: no test direction the export serves")
    pairs = corpus_test_pairs(corpus_dir, directions, max_sentences)
    return compare_with_pytorch(model_dir, export, pairs, vocab)


def check_lines(check: dict) -> list[str]:
    """A human summary of `compare_with_pytorch`'s result."""
    lines = []
    for direction, d in check["directions"].items():
        lines.append(f"{direction}: {d['mismatches']} of {d['sentences']} greedy translations differ from "
                     f"PyTorch's; BLEU {d['bleu_export']:.2f} (PyTorch {d['bleu_pytorch']:.2f})")
    lines.append(f"{check['quantization']}: {check['mismatches']} of {check['sentences']} differ over "
                 f"{len(check['directions'])} directions; mean BLEU change {check['bleu_change']:+.2f}")
    return lines


def export_bleu(export: ExportedModels, pairs: dict[str, list], cfg) -> dict:
    """Corpus BLEU of the export's translations per direction (sacrebleu, as `pipeline.evaluate`) and
    their unweighted mean: {"bleu", "directions": {d: bleu}, "sentences", "signatures": {d: ...}}."""
    from pipeline.evaluate import score_direction

    directions, signatures, total = {}, {}, 0
    for direction, rows in pairs.items():
        src, tgt = direction.split("-")
        hyps = export.translate([p.source for p in rows], src, tgt, cfg)
        score = score_direction(hyps, [p.target for p in rows], tgt)
        directions[direction] = score["bleu"]
        signatures[direction] = score["bleu_signature"]
        total += len(rows)
    mean = sum(directions.values()) / len(directions) if directions else None
    return {"bleu": mean, "directions": directions, "sentences": total, "signatures": signatures}


def corpus_test_pairs(corpus_dir: str | Path, directions: Optional[Sequence[str]] = None,
               max_sentences: Optional[int] = None) -> dict[str, list]:
    """{direction: the first `max_sentences` test pairs} for the corpus's directions (or `directions`)."""
    from pipeline.data.corpus import read_pairs
    from pipeline.io import read_json

    corpus_dir = Path(corpus_dir)
    if directions is None:
        directions = read_json(corpus_dir / "meta.json").get("directions") or []
    return {d: read_pairs(corpus_dir / "test" / f"{d}.tsv")[:max_sentences] for d in directions}

