"""Split Matching (Chen et al.): a Mask2Former whose queries split into seen and candidate groups, each matched
to its own targets (§3.2), Multi-scale Feature Enhancement (§3.3), random queries at inference (§3.4), and the
candidates' source: multi-scale K-Means on a frozen CLIP's dense features and the CLS of each pseudo-masked region.

Needs the `sm` extra (transformers' Mask2Former)."""

from oczss.model.sm.candidates import CandidateParams, Candidates, unseen_candidates
from oczss.model.sm.config import ABLATIONS, SMConfig, ablation, resnet50
from oczss.model.sm.objective import Batch
from oczss.model.sm.optim import MASK2FORMER_SCHEDULE, param_groups
from oczss.model.sm.segmentor import SplitMatching, build_sm, restore_sm

__all__ = ["ABLATIONS", "Batch", "CandidateParams", "Candidates", "MASK2FORMER_SCHEDULE", "SMConfig", "SplitMatching",
           "ablation", "build_sm", "param_groups", "resnet50", "restore_sm",
           "unseen_candidates"]
