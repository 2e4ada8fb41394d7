"""Stage benchmark: peak decoding throughput of every deployable model over a sweep of batch sizes, in
PyTorch and (benchmark.ctranslate2) in CTranslate2 for every model that exports exactly."""

import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--evaluations", type=Path, default=None,
                   help="the evaluate stage's folder: the PyTorch BLEU beside each CTranslate2 row's")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.benchmark import run_benchmark
    from pipeline.io import write_json

    from pipeline.roles import Roles

    teacher = Roles.from_params(params).teacher
    result = run_benchmark(args.models_dir, params.evaluate.models, args.corpus, params.benchmark,
                           params.evaluate.decode, reference=teacher, evaluations=args.evaluations)
    write_json(args.out, result)
    width = max(map(len, [*result["models"], *result.get("ctranslate2", {}).get("skipped", {})]), default=0)
    for name, m in result["models"].items():
        ratio = result.get("ratios_vs_reference", {}).get(name)
        versus = f"{ratio:.2f}x {teacher}" if ratio is not None else f"no ratio to {teacher}"
        extra = ""
        if m.get("engine") == "ctranslate2":
            greedy = m["greedy_vs_pytorch"]
            change = m.get("bleu_change_vs_pytorch")
            extra = (f", BLEU {m['bleu']:.2f}" + (f" ({change:+.2f} against PyTorch on the same "
                                                   f"{m['bleu_sentences']} sentences)" if change is not None else "")
                     + f", {greedy['mismatches']} of {greedy['sentences']} greedy translations differ from PyTorch's")
        print(f"{name:>{width}}: {m['peak_tokens_per_second']:9.0f} tokens/s peak (batch "
              f"{m['best_batch_size']}), {versus}, {m['resident_params']:,} params resident, "
              f"{m['weights_mb']:.1f} MB{extra}")
    for name, reason in result.get("ctranslate2", {}).get("skipped", {}).items():
        print(f"{name:>{width}}: no CTranslate2 row ({reason})")


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
