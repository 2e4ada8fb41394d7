"""Training: batches, losses, the LightningModule, and the fit loop with resume."""
