"""Stage extract: per-task sub-networks of the task-routed MoE, each checked against the full model.

For every direction of the corpus, the first `extract.verify_sentences` test pairs are scored
teacher-forced (fp32, eval) by the full model and by the sub-network serving that direction; above
`extract.tolerance` the stage fails and writes nothing.
"""

import logging
import sys
import time
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params

log = logging.getLogger(__name__)


def _load_vocab(path: Path):
    from pipeline.data.vocab import Vocab

    return Vocab(path)


def _test_pairs(corpus: Path, direction: str, limit: int) -> list[tuple[str, str]]:
    from pipeline.data.corpus import read_pairs

    return [(p.source, p.target) for p in read_pairs(corpus / "test" / f"{direction}.tsv")[:limit]]


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--model", type=Path, required=True, help="the task-routed checkpoint")
    p.add_argument("--corpus", type=Path, required=True, help="the prepared corpus (data/corpus)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the sub-networks")
    p.add_argument("--report", type=Path, required=True, help="the JSON report (DVC metrics)")
    args = p.parse_args(argv)
    cfg = load_params(args.params).extract

    from pipeline.errors import PipelineError
    from pipeline.extract import (
        extract_subnetworks, save_subnetworks, split_direction, teacher_forced_batch, verify_subnetwork,
    )
    from pipeline.io import read_json, write_json
    from pipeline.model import load_checkpoint

    started = time.perf_counter()
    model = load_checkpoint(args.model)
    directions = read_json(args.corpus / "meta.json").get("directions") or []
    if not directions:
        raise PipelineError(f"{args.corpus / 'meta.json'}: no directions")
    vocab = _load_vocab(args.corpus / "spm.model")
    subnetworks = extract_subnetworks(model, directions)

    tasks = {}
    for key, (sub, entry) in subnetworks.items():
        diffs = {}
        for direction in entry["directions"]:
            src_lang, tgt_lang = split_direction(direction)
            pairs = _test_pairs(args.corpus, direction, cfg.verify_sentences)
            if pairs:
                batch = teacher_forced_batch(vocab, pairs, src_lang, tgt_lang, model.cfg.languages)
                diffs[direction] = verify_subnetwork(model, sub, *batch)
        worst = max(diffs.values(), default=0.0)
        if worst > cfg.tolerance:
            raise PipelineError(f"extract: sub-network {key!r} differs from {args.model} by {worst:.3g} "
                                f"in logits (tolerance extract.tolerance = {cfg.tolerance:g})")
        tasks[key] = {"max_abs_logit_diff": worst, "per_direction": diffs,
                      "resident_parameters": entry["resident_parameters"],
                      "full_parameters": entry["full_parameters"],
                      "resident_fraction": entry["resident_parameters"] / entry["full_parameters"],
                      "layers": entry["layers"]}
        log.info("%s: max |logit diff| %.2e, %d of %d parameters resident", key, worst,
                 entry["resident_parameters"], entry["full_parameters"])

    save_subnetworks(subnetworks, args.out, model, extra={"source_checkpoint": str(args.model)})
    write_json(args.report, {
        "tolerance": cfg.tolerance,
        "verify_sentences": cfg.verify_sentences,
        "max_abs_logit_diff": max((t["max_abs_logit_diff"] for t in tasks.values()), default=0.0),
        "full_parameters": model.parameter_count().total,
        "tasks": tasks,
        "wall_seconds": time.perf_counter() - started,
    })


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
