"""Reports: an HTML page with curves, tables and plots for a training run."""
