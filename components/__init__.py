"""trs-pose domain library: data, models, the TRS engine, evaluation, storage, registry, launchers.

Nothing in here imports ZenML; steps and pipelines build on these modules.
"""
