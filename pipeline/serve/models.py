"""Open any model folder the pipeline writes and translate text with it.

Folders: a checkpoint (`config.json` + `model.safetensors`: dense, token_moe, task_moe, student,
dense_long), the task-MoE's sub-networks (`manifest.json`: the one serving the direction is used), or a
CTranslate2 export (`export.json`, `taskmoe export --format ctranslate2`). What a folder is and which
languages it knows is read from its small JSON files, so a wrong language or a missing folder is reported
before any weights load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from pipeline.errors import PipelineError

DEFAULT_VOCAB = Path("data") / "corpus" / "spm.model"


@dataclass
class FolderInfo:
    folder: Path
    kind: str  # checkpoint | subnetworks | ctranslate2
    languages: list[str]


def inspect_folder(folder: str | Path) -> FolderInfo:
    """What `folder` holds; a `PipelineError` naming the file when it is missing or unreadable."""
    from pipeline.extract import MANIFEST_FILE
    from pipeline.io import read_json
    from pipeline.model.checkpoint import CONFIG_FILE, load_config
    from pipeline.serve.ct2 import EXPORT_FILE

    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: model folder not found")
    for name, kind in ((EXPORT_FILE, "ctranslate2"), (MANIFEST_FILE, "subnetworks")):
        if (folder / name).exists():
            data = read_json(folder / name)
            languages = data.get("languages") if isinstance(data, dict) else None
            if not isinstance(languages, list) or not languages:
                raise PipelineError(f"{folder / name}: no 'languages' list (the folder is damaged; "
                                    "make it again)")
            return FolderInfo(folder, kind, [str(x) for x in languages])
    if (folder / CONFIG_FILE).exists():
        return FolderInfo(folder, "checkpoint", load_config(folder).languages)
    raise PipelineError(f"{folder}: not a model folder (no {CONFIG_FILE}, {MANIFEST_FILE} or {EXPORT_FILE})")


def check_languages(info: FolderInfo, src_lang: str, tgt_lang: str) -> None:
    for flag, lang in (("--from", src_lang), ("--to", tgt_lang)):
        if lang not in info.languages:
            raise PipelineError(f"unknown language {lang!r} ({flag}): {info.folder} translates between "
                                f"{', '.join(info.languages)}")
    if src_lang == tgt_lang:
        raise PipelineError(f"--from and --to are both {src_lang!r}: nothing to translate")


def find_vocab(info: FolderInfo, vocab_path: Optional[str | Path]) -> Path:
    """The SentencePiece model: an export's own, else --vocab, else data/corpus/spm.model."""
    if info.kind == "ctranslate2":
        from pipeline.serve.ct2 import VOCAB_FILE

        return info.folder / VOCAB_FILE
    path = Path(vocab_path) if vocab_path else DEFAULT_VOCAB
    if not path.exists():
        raise PipelineError(f"{path}: SentencePiece model not found; pass --vocab <corpus>/spm.model "
                            "(the prepare stage writes data/corpus/spm.model)")
    return path


class Translator:
    """Translates with what a folder holds, PyTorch or CTranslate2, under one `DecodeConfig`."""

    def __init__(self, info: FolderInfo, vocab_path: Optional[str | Path] = None, device: str = "cpu",
                 threads: int = 0):
        self.info = info
        self.device, self.threads = device, threads
        if info.kind == "ctranslate2":
            from pipeline.serve.ct2 import ExportedModels

            self.export = ExportedModels(info.folder, device=device, threads=threads)
            self.vocab = self.export.vocab
        else:
            from pipeline.data.vocab import Vocab
            from pipeline.extract import load_deployable

            self.vocab = Vocab(find_vocab(info, vocab_path))
            self.deployable = load_deployable(info.folder, device=device)

    @property
    def engine(self) -> str:
        return "ctranslate2" if self.info.kind == "ctranslate2" else "pytorch"

    def translate(self, sources: list[str], src_lang: str, tgt_lang: str, cfg,
                  progress: Optional[Callable[[int], None]] = None) -> list[str]:
        if self.info.kind == "ctranslate2":
            return self.export.translate(sources, src_lang, tgt_lang, cfg, progress)
        from pipeline.decode import translate
        from pipeline.serve.ct2 import check_vocab

        model = self.deployable.model_for(src_lang, tgt_lang)
        check_vocab(self.vocab, model.cfg, str(self.info.folder))
        return translate(model, self.vocab, sources, src_lang, tgt_lang, cfg, device=self.device,
                         progress=progress)
