"""Closing the labeling loop: which unlabeled images to label next, the task for a labeling tool, the merge back."""
