"""The report's figures (matplotlib, Agg backend: no display needed).

Each function takes plain data already read by `pipeline.report`, writes one PNG and returns True, or
returns False (writing nothing) when its data are missing, so the report can say "not available".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from pipeline.report.inputs import engine_bleu

DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return True


def quality_vs_cost(bleu: dict[str, dict], benchmark: Optional[dict], path: Path) -> bool:
    """Average BLEU (with its bootstrap interval) against peak tokens/s and resident parameters.

    `bleu`: model -> {"bleu", "low", "high"} (compare.json systems.<m>.groups.avg). Engine rows of
    benchmark.json (CTranslate2: `<model>+ct2-<quantization>`) are drawn as hollow markers, without an
    interval, at `engine_bleu`: their model's test BLEU plus the change measured on the same sentences."""
    models = (benchmark or {}).get("models", {})
    points = {n: bleu[n] for n in models if n in bleu}
    for n, m in models.items():
        value = engine_bleu(m, bleu) if m.get("engine") == "ctranslate2" else None
        if value is not None:
            points[n] = {"bleu": value, "low": value, "high": value}
    if not points:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "peak_tokens_per_second", "peak decoded tokens / s"),
                           (axes[1], "resident_params", "parameters resident to serve one task")):
        for name, b in points.items():
            x = models[name].get(key)
            if x is None:
                continue
            engine = models[name].get("engine", "pytorch") != "pytorch"
            ax.errorbar([x], [b["bleu"]], yerr=[[b["bleu"] - b["low"]], [b["high"] - b["bleu"]]],
                        fmt="o", capsize=4, mfc="none" if engine else None)
            ax.annotate(name, (x, b["bleu"]), textcoords="offset points", xytext=(5, 5), fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("average BLEU")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"quality vs throughput ({benchmark.get('direction', '?')})")
    axes[1].set_title("quality vs memory to serve a task")
    return _save(fig, path)


def training_curves(curves: dict[str, list[dict]], path: Path) -> bool:
    """Validation loss and BLEU against step, one line per model (rows of curves.csv)."""
    keys = ("val_loss", "val_bleu")
    series = {name: {k: [(r["step"], r[k]) for r in rows if r.get(k) is not None and "step" in r]
                     for k in keys} for name, rows in curves.items()}
    if not any(points for s in series.values() for points in s.values()):
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, keys):
        for name, by_key in series.items():
            if by_key[key]:
                steps, values = zip(*by_key[key])
                ax.plot(steps, values, marker=".", label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def _step_axes(axes, warm: Optional[int]) -> None:
    """Panels against training step: the end of a shared warm start as a dotted line, grid, legend."""
    for ax in axes:
        if warm:
            ax.axvline(warm, color="grey", linestyle=":", label="end of shared warm start")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")


def learning_curves(study: Optional[dict], path: Path) -> bool:
    """BLEU of each model against step (left) and each model's gain over dense (right), with the
    bootstrap intervals as bands; the end of a shared warm start as a dotted line (curves.json)."""
    if not study or not study.get("bleu"):
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    # One colour per model in both panels (the gain panel has no dense line).
    colours = {name: f"C{i}" for i, name in enumerate(study["bleu"])}
    for name, points in study["bleu"].items():
        steps = [p["step"] for p in points]
        axes[0].plot(steps, [p["bleu"] for p in points], marker=".", label=name, color=colours[name])
        axes[0].fill_between(steps, [p["low"] for p in points], [p["high"] for p in points], alpha=0.2,
                             color=colours[name])
    for name, points in study.get("gain_vs_dense", {}).items():
        steps = [p["step"] for p in points]
        colour = colours.get(name)
        axes[1].plot(steps, [p["diff"] for p in points], marker=".", label=f"{name} − dense",
                     color=colour)
        axes[1].fill_between(steps, [p["low"] for p in points], [p["high"] for p in points], alpha=0.2,
                             color=colour)
    axes[1].axhline(0, color="black", linewidth=0.8)
    setup = study.get("setup", {})
    warm = setup.get("warmstart_steps")
    _step_axes(axes, warm)
    n, conf = setup.get("sentences_per_direction", "?"), setup.get("confidence", 0.95)
    axes[0].set_ylabel("average greedy BLEU (validation)")
    axes[0].set_title(f"learning curves ({n} validation sentences per direction)")
    axes[1].set_ylabel("BLEU difference to dense")
    axes[1].set_title(f"gain over dense, {conf:.0%} paired bootstrap band")
    return _save(fig, path)


def loss_lead(study: Optional[dict], path: Path) -> bool:
    """Validation loss of each model against step (left) and each MoE's lead over dense in nats
    (right), with the bootstrap intervals as bands (curves.json, key "loss")."""
    loss = (study or {}).get("loss")
    if not loss or not loss.get("loss"):
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {name: f"C{i}" for i, name in enumerate(loss["loss"])}
    for ax, series, value in ((axes[0], loss["loss"], "loss"), (axes[1], loss["lead_vs_dense"], "diff")):
        for name, points in series.items():
            steps = [p["step"] for p in points]
            label = name if value == "loss" else f"dense − {name}"
            ax.plot(steps, [p[value] for p in points], marker=".", label=label, color=colours[name])
            ax.fill_between(steps, [p["low"] for p in points], [p["high"] for p in points], alpha=0.2,
                            color=colours[name])
    axes[1].axhline(0, color="black", linewidth=0.8)
    warm = (study.get("setup") or {}).get("warmstart_steps")
    _step_axes(axes, warm)
    conf = loss.get("setup", {}).get("confidence", 0.95)
    axes[0].set_ylabel("validation loss (nats per target token)")
    axes[0].set_title("validation loss, all validation sentences")
    axes[1].set_ylabel("lead over dense (nats per token)")
    axes[1].set_title(f"the MoEs' lead, {conf:.0%} paired bootstrap band")
    return _save(fig, path)


def seed_gains(seeds: Optional[dict], path: Path) -> bool:
    """Each model's gain over dense, and the student against dense_long, per training seed (sentence-
    bootstrap interval) and their mean over seeds (Student's t interval), from compare.json's
    `across_seeds`."""
    if not seeds or not seeds.get("gains"):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"seed {s}" for s in seeds["seeds"]] + ["mean over seeds"]
    from pipeline.stats.compare import seed_differences

    series = seed_differences(seeds)
    width = 0.8 / len(series)
    for i, (kind, model, reference) in enumerate(series):
        summary = seeds[kind][model]
        x = [k + (i - (len(series) - 1) / 2) * width for k in range(len(labels))]
        per = [seeds["per_seed"][str(s)][kind][model] for s in seeds["seeds"]]
        y = [g["diff"] for g in per] + [summary["mean"]]
        low = [g["low"] for g in per] + [summary["seed_low"]]
        high = [g["high"] for g in per] + [summary["seed_high"]]
        ax.errorbar(x, y, yerr=[[v - lo for v, lo in zip(y, low)], [hi - v for v, hi in zip(y, high)]],
                    fmt="o" if kind == "gains" else "s", capsize=4, label=f"{model} − {reference}",
                    color=f"C{i + 1}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("average test BLEU difference")
    ax.set_title("differences per training seed (bootstrap CI) and mean (t CI over seeds)",
                 fontsize="medium")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    return _save(fig, path)


def throughput_vs_batch(benchmark: Optional[dict], path: Path) -> bool:
    """Decoded tokens/s against batch size for every benchmarked model."""
    models = (benchmark or {}).get("models", {})
    if not any(m.get("sweep") for m in models.values()):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in models.items():
        sweep = sorted(m.get("sweep") or [], key=lambda r: r["batch_size"])
        if sweep:
            ax.plot([r["batch_size"] for r in sweep], [r["tokens_per_second"] for r in sweep],
                    marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (sentences)")
    ax.set_ylabel("decoded tokens / s")
    ax.set_title(f"throughput sweep ({benchmark.get('direction', '?')}, {benchmark.get('device', '?')})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def expert_usage(model: str, usage: dict[str, dict[str, list[float]]], path: Path) -> bool:
    """One heatmap per MoE layer: rows target languages, columns experts, cell = routing share.

    `usage`: {layer_name: {tgt_lang: [fraction per expert]}} (meta.json `expert_usage`)."""
    layers = [(name, by_lang) for name, by_lang in usage.items() if by_lang]
    if not layers:
        return False
    plt = _pyplot()
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (layer, by_lang) in zip(axes.flat, layers):
        langs = list(by_lang)
        image = ax.imshow([by_lang[lang] for lang in langs], aspect="auto", cmap="viridis",
                          vmin=0, vmax=1)
        ax.set_yticks(range(len(langs)), langs)
        ax.set_xlabel("expert")
        ax.set_title(layer, fontsize="small")
        fig.colorbar(image, ax=ax, fraction=0.05)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle(f"{model}: share of routing to each expert, by target language")
    return _save(fig, path)
