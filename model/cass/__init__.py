"""CASS (CVPR 2025): training-free open-vocabulary segmentation by spectral object-level context distillation from
a frozen DINO into a frozen CLIP's last attention, and object presence-driven text adjustment (§3)."""

from oczss.model.cass.config import (ABLATIONS, BENCHMARKS, CODE_VS_PAPER, OCZSS_CHOICES, PAPER_READING, CASSConfig,
                                     ablation, for_benchmark, paper_reading)
from oczss.model.cass.segmentor import CASS, build_cass
from oczss.model.cass.text import TEMPLATES

__all__ = ["ABLATIONS", "BENCHMARKS", "CASS", "CASSConfig", "CODE_VS_PAPER", "OCZSS_CHOICES", "PAPER_READING",
           "TEMPLATES", "ablation", "build_cass", "for_benchmark", "paper_reading"]
