"""Evaluation: similarity functions and the 8-metric STS evaluator with markdown/JSON tables."""
