"""Training, distillation, evaluation and export (needs torch; never imported by nodes)."""
