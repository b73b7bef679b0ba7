"""SimZSS (seeds/simzss-poster.txt): a text tower trained against a frozen DINOv2, globally and per concept.

config (SimZSSConfig, SimZSSSchedule), vision (the frozen tower's CLS and patch tokens), text (the text tower and
its tokenizer), losses (L_g, L_l), model (SimZSS, TextBatch), dense (the paper's dense inference).
"""

from oczss.model.simzss.config import SimZSSConfig, SimZSSSchedule
from oczss.model.simzss.dense import dense_logits, segment
from oczss.model.simzss.model import SimZSS, TextBatch, optimizer, train_step
from oczss.model.simzss.vision import VisionTokens, load_vision

__all__ = ["SimZSS", "SimZSSConfig", "SimZSSSchedule", "TextBatch", "VisionTokens", "dense_logits", "load_vision",
           "optimizer", "segment", "train_step"]
