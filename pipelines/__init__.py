"""ZenML pipelines composed from steps/."""
