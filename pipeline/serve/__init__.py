"""Serving what the pipeline trains: the `taskmoe` command (`translate`, `export`) and the CTranslate2 export.

- `pipeline.serve.models`: open any model folder the pipeline writes (a checkpoint, the task-MoE's
  sub-networks, or a CTranslate2 export made by `taskmoe export`) and translate text with it.
- `pipeline.serve.ct2`: the exact CTranslate2 export of the dense deployables (dense, student, dense_long
  and every fully dense task sub-network), the refusal of what has no exact dense form (MoE layers),
  and decoding with an export under the project's own length and stopping rules.
- `pipeline.serve.cli`: the `taskmoe` console script (pyproject.toml `[project.scripts]`).
"""
