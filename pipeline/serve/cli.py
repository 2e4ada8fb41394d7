"""`taskmoe`: translate text with a model the pipeline trained, or export a dense one to CTranslate2.

    taskmoe translate --model models/task_moe_sub --from en --to de < in.txt > out.txt
    taskmoe export --format ctranslate2 --model models/student --out exported/student [--quantization int8]

`translate` reads one sentence per line (blank lines stay blank), writes one translation per line in the
same order, and takes any model folder the pipeline writes (dense, token_moe, task_moe, student,
dense_long, task_moe_sub: the sub-network serving the direction) or an export made by `export`.
A problem the user can fix is one line `error: <what>` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.cli import stage_main
from pipeline.config import DecodeConfig
from pipeline.errors import PipelineError

PROGRESS_FROM = 100  # sentences: a progress bar on stderr from this many on (unless --quiet)


def _parser() -> argparse.ArgumentParser:
    defaults = DecodeConfig()
    p = argparse.ArgumentParser(prog="taskmoe", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{translate,export}")

    t = sub.add_parser("translate", help="translate lines of text (stdin to stdout by default)",
                       description="Translate one sentence per line with a model folder of the pipeline "
                                   "or a CTranslate2 export.")
    t.add_argument("--model", required=True, type=Path,
                   help="a model folder: models/<name>, models/task_moe_sub, or an export")
    t.add_argument("--from", dest="src", required=True, metavar="LANG", help="source language, e.g. en")
    t.add_argument("--to", dest="tgt", required=True, metavar="LANG", help="target language, e.g. de")
    t.add_argument("--vocab", type=Path, default=None,
                   help="the SentencePiece model (default: data/corpus/spm.model; an export has its own)")
    t.add_argument("-i", "--input", default="-", help="input file (default: stdin)")
    t.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    t.add_argument("--beam-size", type=int, default=defaults.beam_size,
                   help=f"beam size; 1 = greedy search (default {defaults.beam_size})")
    t.add_argument("--greedy", action="store_true", help="greedy search (same as --beam-size 1)")
    t.add_argument("--length-penalty", type=float, default=defaults.length_penalty,
                   help=f"beam search length penalty alpha (default {defaults.length_penalty})")
    t.add_argument("--max-len-a", type=float, default=defaults.max_len_a,
                   help=f"at most a * source tokens + b generated tokens (default a = {defaults.max_len_a})")
    t.add_argument("--max-len-b", type=int, default=defaults.max_len_b, help=f"(default b = {defaults.max_len_b})")
    t.add_argument("--batch-tokens", type=int, default=defaults.batch_tokens,
                   help=f"batch budget: padded source tokens x beam per batch (default {defaults.batch_tokens})")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--threads", type=int, default=0, help="CPU threads (default: the library's choice)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("export", help="export a dense deployable to an inference engine",
                       description="Export a dense model folder (dense, student, dense_long, the task "
                                   "sub-networks) to CTranslate2, exactly; MoE models are refused.")
    e.add_argument("--format", required=True, choices=("ctranslate2",))
    e.add_argument("--model", required=True, type=Path, help="the model folder to export")
    e.add_argument("--out", required=True, type=Path, help="the export folder (replaced if it exists)")
    e.add_argument("--vocab", type=Path, default=None, help="the SentencePiece model (default: "
                                                              "data/corpus/spm.model)")
    e.add_argument("--quantization", choices=("float32", "int8"), default="float32",
                   help="float32 (exact) or int8 weights (default float32)")
    e.add_argument("--max-source-tokens", type=int, default=None,
                   help="longest source the export accepts, in tokens (default 1024)")
    e.add_argument("--check", type=Path, default=None, metavar="CORPUS",
                   help="a prepared corpus (data/corpus): after exporting, translate its test sources "
                        "greedily with the export and the PyTorch model, count the differing "
                        "translations and give both BLEU scores (kept in export.json)")
    e.add_argument("--check-sentences", type=int, default=None,
                   help="test pairs per direction for --check (default: all)")
    e.add_argument("--threads", type=int, default=0, help="CPU threads for --check")
    return p


# --------------------------------------------------------------------------------------------------
# translate


def read_lines(path: str) -> tuple[str, list[str]]:
    """(name, lines) of a file or stdin ('-'); blank input or bad UTF-8 is a `PipelineError`."""
    name = "<stdin>" if path == "-" else path
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise PipelineError(f"{path}: input file not found") from None
        except OSError as exc:
            raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines = []
    for number, line in enumerate(raw, 1):
        try:
            lines.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError:
            raise PipelineError(f"{name}: line {number} is not valid UTF-8") from None
    if not any(line.strip() for line in lines):
        raise PipelineError(f"{name}: no text to translate (the input is empty)")
    return name, lines


def _device(choice: str, engine: str) -> str:
    if engine == "ctranslate2":
        import ctranslate2

        has_cuda = ctranslate2.get_cuda_device_count() > 0
    else:
        import torch

        has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise PipelineError(f"--device cuda: no CUDA device available to {engine}")
    return choice if choice != "auto" else ("cuda" if has_cuda else "cpu")


def translate_command(args: argparse.Namespace) -> None:
    from pipeline.serve.models import Translator, check_languages, find_vocab, inspect_folder

    beam = 1 if args.greedy else args.beam_size
    for flag, ok in (("--beam-size", beam >= 1), ("--batch-tokens", args.batch_tokens > 0),
                     ("--max-len-a", args.max_len_a >= 0), ("--max-len-b", args.max_len_b >= 1),
                     ("--threads", args.threads >= 0)):
        if not ok:
            raise PipelineError(f"{flag}: must be {'>= 0' if flag in ('--max-len-a', '--threads') else '>= 1'}")
    info = inspect_folder(args.model)  # missing or damaged folder, before reading the input
    check_languages(info, args.src, args.tgt)
    find_vocab(info, args.vocab)
    name, lines = read_lines(args.input)
    cfg = DecodeConfig(beam_size=beam, length_penalty=args.length_penalty, max_len_a=args.max_len_a,
                       max_len_b=args.max_len_b, batch_tokens=args.batch_tokens)
    engine = "ctranslate2" if info.kind == "ctranslate2" else "pytorch"
    device = _device(args.device, engine)
    if engine == "pytorch" and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    translator = Translator(info, args.vocab, device=device, threads=args.threads)
    todo = [i for i, line in enumerate(lines) if line.strip()]

    from tqdm import tqdm

    with tqdm(total=len(todo), unit="sent", desc=f"{args.src}-{args.tgt}", file=sys.stderr,
              disable=args.quiet or len(todo) < PROGRESS_FROM) as bar:
        hyps = translator.translate([lines[i].strip() for i in todo], args.src, args.tgt, cfg, bar.update)
    out = [""] * len(lines)
    for i, hyp in zip(todo, hyps):
        out[i] = hyp.replace("\r", " ").replace("\n", " ")
    text = "".join(line + "\n" for line in out)
    if args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from pipeline.io import atomic_file

        with atomic_file(args.output) as handle:
            handle.write(text)


# --------------------------------------------------------------------------------------------------
# export


def export_command(args: argparse.Namespace) -> None:
    from pipeline.data.vocab import Vocab
    from pipeline.io import write_json
    from pipeline.serve import ct2
    from pipeline.serve.models import DEFAULT_VOCAB

    vocab_path = args.vocab or DEFAULT_VOCAB
    if not Path(vocab_path).exists():
        raise PipelineError(f"{vocab_path}: SentencePiece model not found; pass --vocab <corpus>/spm.model")
    if args.check is not None and not (args.check / "meta.json").exists():
        raise PipelineError(f"{args.check / 'meta.json'}: file not found (--check takes a prepared corpus)")
    vocab = Vocab(vocab_path)
    index = ct2.export_ctranslate2(args.model, args.out, vocab, args.quantization,
                                   args.max_source_tokens or ct2.DEFAULT_MAX_SOURCE_TOKENS)
    for key, entry in index["models"].items():
        print(f"{args.out / entry['folder']}: {entry['weights_bytes'] / 2**20:.1f} MB, serves "
              f"{', '.join(entry['directions'])}")
    if args.check is None:
        return
    check = ct2.check_export(args.model, args.out, args.check, vocab, args.check_sentences, args.threads)
    index["check"] = check
    write_json(args.out / ct2.EXPORT_FILE, index)
    for line in ct2.check_lines(check):
        print(line)


def _main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "translate":
        logging.getLogger().setLevel(logging.WARNING)
        translate_command(args)
    else:
        export_command(args)


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
