"""The one SentencePiece model all languages share (docs/design.md §2: shared vocabulary, `<2xx>` target tags).

Unigram model; ids pad=0, unk=1, bos=2, eos=3; `<2xx>` for every language (pivot included) are
user-defined symbols, so a tag is always one piece. Trained from an iterator into memory on one thread:
the same sentences give byte-identical files (a file-based run would also embed its temporary paths).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Sequence

import sentencepiece as sp

from pipeline.errors import PipelineError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def language_tag(lang: str) -> str:
    return f"<2{lang}>"


def train_sentencepiece(sentences: Sequence[str], out_dir: str | Path, languages: Sequence[str],
                        vocab_size: int, character_coverage: float = 1.0) -> Path:
    """Write `spm.model` and `spm.vocab` (piece<TAB>score) into `out_dir`; return the model path."""
    if not sentences:
        raise PipelineError("data: no training sentences for SentencePiece")
    out_dir = Path(out_dir)
    writer = io.BytesIO()
    try:
        sp.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=writer, model_type="unigram",
            vocab_size=vocab_size, character_coverage=character_coverage,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            user_defined_symbols=[language_tag(lang) for lang in languages],
            num_threads=1, minloglevel=2)
    except RuntimeError as exc:
        limit = re.search(r"value <= (\d+)", str(exc))
        if limit:
            raise PipelineError(f"data.vocab_size: {vocab_size} is too large for the SentencePiece training "
                                f"text ({len(sentences)} sentences); set it to at most {limit.group(1)}") from None
        raise PipelineError(f"SentencePiece training failed: {str(exc).splitlines()[0]}") from None
    model_path = out_dir / "spm.model"
    model_path.write_bytes(writer.getvalue())
    processor = sp.SentencePieceProcessor(model_proto=writer.getvalue())
    with open(out_dir / "spm.vocab", "w", encoding="utf-8", newline="\n") as handle:
        for i in range(processor.get_piece_size()):
            handle.write(f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n")
    return model_path
