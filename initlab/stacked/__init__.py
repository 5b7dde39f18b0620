"""stacked: many runs as one stacked model, and a stacked group's training loop."""
