"""The OC-ZSS model: prompted frozen CLIP with object prompts, ORA with granular attention, OTSeg decoder."""

from oczss.model import losses, text
from oczss.model.config import OCZSSConfig
from oczss.model.losses import IGNORE
from oczss.model.masking import attention_mask, region_labels
from oczss.model.segmentor import OCZSS, build_model, probabilities
from oczss.model.transport import sinkhorn

__all__ = ["IGNORE", "OCZSS", "OCZSSConfig", "attention_mask", "build_model", "losses", "probabilities", "region_labels",
           "sinkhorn", "text"]
