"""Pose networks: timm backbones, SimpleBaseline and Multi-level Feature Learning heads."""

from components.models.backbone import LoadReport, PretrainedWeightsError
from components.models.pose_net import PoseNet, PoseOutput, build_model, build_pose_net

__all__ = ["LoadReport", "PoseNet", "PoseOutput", "PretrainedWeightsError", "build_model", "build_pose_net"]
