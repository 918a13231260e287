"""Synthetic COCO-format people: the embedded default dataset.

body (pose and proportions) -> person (painting one body) -> background (clutter, occluders)
-> scene (layering and labels read back from the picture) -> writer (COCO files on disk).
"""

from components.data.synthetic.scene import Scene, render_scene
from components.data.synthetic.style import STYLES, SceneStyle
from components.data.synthetic.writer import SynthesisSummary, generate_dataset, synthesis_info

__all__ = ["STYLES", "Scene", "SceneStyle", "SynthesisSummary", "generate_dataset", "render_scene", "synthesis_info"]
