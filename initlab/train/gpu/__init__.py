"""CUDA-only parts of the training loop: captured step graphs, side streams for record steps."""
