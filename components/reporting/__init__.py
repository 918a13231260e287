"""The figures that tell a run's story, drawn after training from its history and evaluation results.

One figure a module: `training_curves`, `metric_comparison` (challenger vs champion), `per_joint`
(OKS-based accuracy per joint), `joint_errors` (good / jitter / inversion / swap / miss per joint),
`prediction_grid` (worst and best people, prediction beside ground truth) and `variant_comparison`
(benchmarks/ssl_gain.py). `run_report` draws a run's set. Matplotlib's object API on Agg canvases:
no display, no global pyplot state, nothing on the training hot path.
"""
