"""`Vocab`: the shared SentencePiece model as the model stages use it (docs/architecture.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import sentencepiece as sp

from pipeline.errors import PipelineError

_TAG = re.compile(r"<2([a-z]{2,3})>")


class Vocab:
    """Encode a source with its target-language tag first (`<2xx> ... </s>`), a target as `... </s>`."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / "spm.model"
        if not path.is_file():
            raise PipelineError(f"{path}: SentencePiece model not found (run the prepare stage)")
        self.path = path
        self._sp = sp.SentencePieceProcessor()
        try:
            self._sp.load(str(path))
        except (OSError, RuntimeError) as exc:
            raise PipelineError(f"{path}: not a SentencePiece model ({str(exc).splitlines()[0]})") from None
        self.pad_id = self._sp.pad_id()
        self.unk_id = self._sp.unk_id()
        self.bos_id = self._sp.bos_id()
        self.eos_id = self._sp.eos_id()
        if min(self.pad_id, self.bos_id, self.eos_id) < 0:
            raise PipelineError(f"{path}: the model lacks pad, bos or eos ids (train it with the prepare stage)")
        self._tags = {}  # language -> id of its <2xx> tag (user-defined symbols of the model)
        for i in range(self._sp.get_piece_size()):
            match = _TAG.fullmatch(self._sp.id_to_piece(i))
            if match:
                self._tags[match.group(1)] = i
        self._skip = {self.pad_id, self.bos_id, *self._tags.values()}

    @property
    def size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def languages(self) -> list[str]:
        """The languages with a `<2xx>` tag, in id order."""
        return sorted(self._tags, key=self._tags.get)

    def tag_id(self, lang: str) -> int:
        if lang not in self._tags:
            raise PipelineError(f"{self.path}: no tag <2{lang}> (languages: {', '.join(self.languages)})")
        return self._tags[lang]

    def encode_source(self, text: str, tgt_lang: str) -> list[int]:
        return [self.tag_id(tgt_lang), *self._sp.encode(text), self.eos_id]

    def encode_target(self, text: str) -> list[int]:
        return [*self._sp.encode(text), self.eos_id]

    def pieces(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)

    @property
    def tokens(self) -> list[str]:
        """Every piece, in id order (an inference engine's vocabulary: token i is id i)."""
        return [self._sp.id_to_piece(i) for i in range(self.size)]

    def piece_id(self, piece: str) -> int:
        """The id of a piece (unk_id for a string that is not one)."""
        return self._sp.piece_to_id(piece)

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to the first eos; pad, bos and language tags dropped."""
        kept = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in self._skip:
                kept.append(i)
        return self._sp.decode(kept)
