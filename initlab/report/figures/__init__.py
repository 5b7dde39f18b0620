"""The report's figures: panel layout (facets), line figures, heatmaps, theory figures, drawn in parallel."""
