"""Task-level MoE vs distillation: the library behind the DVC stages (no side effects at import)."""
