"""Inference: the per-clip engine, its schedule and memory, and the predictor a program uses (docs/api.md)."""

from inference.engine import EngineConfig, EngineSession, FrameInput, FrameResult, PCVOSEngine, prepare_network
from inference.objects import ObjectManager
from inference.predictor import Predictor

__all__ = [
    "EngineConfig",
    "EngineSession",
    "FrameInput",
    "FrameResult",
    "ObjectManager",
    "PCVOSEngine",
    "Predictor",
    "prepare_network",
]
