"""`oczss convert otseg`: synthetic mmseg checkpoints with OTSeg's exact key names and shapes (ViT-B/16; a tiny CLIP
with the same layout where a forward at 512 px is needed) convert, forward like the same weights loaded by hand,
evaluate offline; renamed keys, wrong shapes, pickle payloads and contradicting meta are refused."""

import hashlib
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import oczss
from conftest import make_voc
from oczss.cli import main
from oczss.errors import OCZSSError
from oczss.model import OCZSSConfig, build_model
from oczss.model.clip import load_tower
from oczss.pipeline.data.classes import VOC_CLASSES
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.convert import check_layout, convert_otseg, expected_layout
from oczss.pipeline.stage2.evaluate import evaluate

EMBEDDINGS = Path("/work/shared/reference/text-embeddings")
VITB16 = dict(width=768, depth=12, embed=512, text_width=512, text_depth=12, vocab=49408, context=77, patch=16)
TINY = dict(width=64, depth=2, embed=32, text_width=32, text_depth=2, vocab=49408, context=77, patch=16)
VOC_CONFIG = """img_size = 512
base_class = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
novel_class = [15, 16, 17, 18, 19]
model = dict(
    type='OTSeg',
    backbone=dict(type='VPTCLIPVisionTransformer', num_tokens=10, input_resolution=512),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(426, 426)),{extra}
    load_text_embedding='Path/to/configs/_base_/datasets/text_embedding/voc12_otseg.npy')
"""


class Payload:
    """Unpickling this calls open(marker, 'w'): it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _linears(prefix: str, layers: dict) -> dict:
    """`prefix + name + .weight/.bias` for Linear-like modules given as name -> (out, in) or (dim,) (a LayerNorm)."""
    return {f"{prefix}{name}.{p}": (shape if p == "weight" else shape[:1]) for name, shape in layers.items()
            for p in ("weight", "bias")}


def _block(prefix: str, w: int) -> dict:
    """A CLIP ResidualAttentionBlock (OTSeg models/backbone/utils.py): nn.MultiheadAttention, ln_1, mlp, ln_2."""
    return {f"{prefix}attn.in_proj_weight": (3 * w, w), f"{prefix}attn.in_proj_bias": (3 * w,),
            **_linears(prefix, {"attn.out_proj": (w, w), "ln_1": (w,), "mlp.c_fc": (4 * w, w),
                                "mlp.c_proj": (w, 4 * w), "ln_2": (w,)})}


def otseg_shapes(d: dict, num_vpt: int = 10, image_size: int = 512, buffer: int = 16) -> dict:
    """OTSeg's state dict, key -> shape, in registration order: VPTCLIPVisionTransformer, ATMSingleHeadSeg (its loss
    buffer, TPN_DecoderLayer x 3 whose multihead_attn is AttentionOT, q_proj), CLIPTextEncoder."""
    w, c, p, g, t = d["width"], d["embed"], d["patch"], image_size // d["patch"], d["text_width"]
    s = {"backbone.class_embedding": (w,), "backbone.positional_embedding": (g * g + 1, w), "backbone.proj": (w, c),
         "backbone.prompt_embeddings": (1, num_vpt, w), "backbone.deep_prompt_embeddings": (d["depth"] - 1, num_vpt, w),
         "backbone.conv1.weight": (w, 3, p, p), **_linears("backbone.", {"ln_pre": (w,)})}
    for i in range(d["depth"]):
        s.update(_block(f"backbone.transformer.resblocks.{i}.", w))
    s.update(_linears("backbone.", {"ln_post": (w,), "prompt_proj": (w, w), "prompt_norm": (w,)}))
    s["decode_head.loss_decode.criterion.empty_weight"] = (buffer,)
    for i in range(3):
        q = f"decode_head.decoder_1.layers.{i}."
        s.update({f"{q}self_attn.in_proj_weight": (3 * c, c), f"{q}self_attn.in_proj_bias": (3 * c,)})
        s.update(_linears(q, {"self_attn.out_proj": (c, c), "linear1": (4 * c, c), "linear2": (c, 4 * c),
                              "norm1": (c,), "norm2": (c,), "norm3": (c,), "multihead_attn.q": (c, c),
                              "multihead_attn.k": (c, c), "multihead_attn.v": (c, c), "multihead_attn.proj": (c, c)}))
    s.update(_linears("decode_head.", {"q_proj": (c, 2 * c)}))
    s.update({"text_encoder.positional_embedding": (d["context"], t), "text_encoder.text_projection": (t, c),
              "text_encoder.token_embedding.weight": (d["vocab"], t), **_linears("text_encoder.", {"ln_final": (t,)})})
    for i in range(d["text_depth"]):
        s.update(_block(f"text_encoder.transformer.resblocks.{i}.", t))
    return s


def otseg_state(d: dict, seed: int = 0, **kw) -> OrderedDict:
    """Random values: LayerNorm weights near 1, everything else N(0, 0.02); the loss buffer as OTSeg makes it."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in otseg_shapes(d, **kw).items():
        norm = re.search(r"(ln_\w+|norm\d?)\.weight$", key)
        state[key] = (1 if norm else 0) + (0.1 if norm else 0.02) * torch.randn(shape, generator=g)
    state["decode_head.loss_decode.criterion.empty_weight"].fill_(1)[-1] = 0.1  # 1 per class, 0.1 for "no object"
    state._metadata = OrderedDict({"": {"version": 1}})  # what mmcv's get_state_dict keeps
    return state


def otseg_meta(classes=VOC_CLASSES, extra: str = "", exp_name="vpt_seg_zero_vit-b_512x512_20k_12_10.py") -> dict:
    """meta as OTSeg's train.py and mmcv 1.4.4's save_checkpoint write it."""
    return {"env_info": "sys.platform: linux\nPyTorch: 1.10.1\nMMCV: 1.4.4", "seed": None, "exp_name": exp_name,
            "mmseg_version": "0.24.0+abcdef0", "config": VOC_CONFIG.format(extra=extra), "CLASSES": tuple(classes),
            "PALETTE": [[i, 2 * i, 3 * i] for i in range(len(classes))],
            "hook_msgs": {"last_ckpt": "work_dirs/iter_10000.pth"}, "epoch": 3, "iter": 19999,
            "mmcv_version": "1.4.4", "time": "Fri Jul  5 12:00:00 2024"}


def write_mmseg(path: Path, state, meta) -> Path:
    """An mmcv checkpoint file: meta, state_dict and an AdamW optimizer state, pickle protocol 2 (torch 1.10)."""
    optimizer = {"state": {0: {"step": 3, "exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4)}},
                 "param_groups": [{"params": [0], "lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                                   "weight_decay": 0.01, "amsgrad": False, "initial_lr": 2e-4}]}
    torch.save({"meta": meta, "state_dict": state, "optimizer": optimizer} if meta is not None else state, path,
               pickle_protocol=2)
    return path


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Any attempt to fetch or open CLIP weights fails the test: converted checkpoints carry their own."""
    def refuse(*args):
        raise AssertionError(f"CLIP weights were looked up: {args}")

    monkeypatch.setattr("oczss.model.clip._checkpoint_path", refuse)


@pytest.fixture(scope="module")
def vitb16(tmp_path_factory):
    """A full-size ViT-B/16 OTSeg checkpoint (376 keys, 656 MB), removed afterwards with what was made from it."""
    folder = tmp_path_factory.mktemp("otseg")
    state = otseg_state(VITB16)
    yield {"state": state, "file": write_mmseg(folder / "iter_20000.pth", state, otseg_meta()), "folder": folder}
    for path in folder.iterdir():
        path.unlink()


@pytest.fixture
def tiny_text(tmp_path) -> Path:
    path = tmp_path / "voc12_otseg.npy"
    np.save(path, np.random.default_rng(0).standard_normal((20, 6, 32)).astype(np.float16))
    return path


def tiny_convert(tmp_path, text, state=None, meta="voc", name="out.pt", **kw):
    """Write a tiny OTSeg checkpoint and convert it (voc, inductive unless given)."""
    src = write_mmseg(tmp_path / f"src-{name}.pth", otseg_state(TINY) if state is None else state,
                      otseg_meta() if meta == "voc" else meta)
    args = {"dataset": "voc", "setting": "inductive", **kw}
    return src, convert_otseg(src, args["dataset"], args["setting"], tmp_path / name, text, backbone="tiny")


def direct_model(state: dict, image_size: int) -> torch.nn.Module:
    """The same weights put into oczss's modules by hand, following OTSeg's forward, without the converter."""
    model = build_model(OCZSSConfig.otseg(weights="random", clip_image_size=image_size))
    model.encoder.clip.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()
                                        if k.startswith("backbone.") and "prompt" not in k})
    enc, dec = model.encoder, model.decoder

    def put(module, key):
        module.load_state_dict({"weight": state[f"{key}.weight"], "bias": state[f"{key}.bias"]})

    with torch.no_grad():
        enc.prompt_embeddings.copy_(state["backbone.prompt_embeddings"])
        enc.deep_prompt_embeddings.copy_(state["backbone.deep_prompt_embeddings"])
    put(enc.prompt_proj, "backbone.prompt_proj")
    put(enc.prompt_norm, "backbone.prompt_norm")
    put(dec.q_proj, "decode_head.q_proj")
    for i, layer in enumerate(dec.layers):
        p = f"decode_head.decoder_1.layers.{i}."
        for ours, theirs in ((layer.attn.q, "multihead_attn.q"), (layer.attn.k, "multihead_attn.k"),
                             (layer.attn.v, "multihead_attn.v"), (layer.attn.out, "multihead_attn.proj"),
                             (layer.ffn[0], "linear1"), (layer.ffn[3], "linear2"), (layer.norm_attn, "norm2"),
                             (layer.norm_ffn, "norm3")):
            put(ours, p + theirs)
    put(dec.last_q, "decode_head.decoder_1.layers.2.multihead_attn.q")
    put(dec.last_k, "decode_head.decoder_1.layers.2.multihead_attn.k")
    return model.eval()


def test_reference_layout_is_what_the_converter_expects():
    shapes = otseg_shapes(VITB16)
    assert len(shapes) == 376
    assert [sum(k.startswith(p) for k in shapes) for p in ("backbone.", "decode_head.", "text_encoder.")] == [158, 69,
                                                                                                            149]
    layout = expected_layout("ViT-B-16", 10, 512)
    assert set(layout) == set(shapes)
    assert all(e.shape == shapes[k] for k, e in layout.items() if e.shape is not None)
    kinds = [e.kind for e in layout.values()]
    assert [kinds.count(k) for k in ("trainable", "clip", "dead", "text", "buffer")] == [44, 152, 30, 149, 1]
    assert sum(np.prod(e.shape) for e in layout.values() if e.kind == "trainable") == 8_039_168
    assert expected_layout("ViT-B-16", 10, 480)["backbone.positional_embedding"].shape == (901, 768)


def test_vitb16_checkpoint_converts_and_forwards_like_a_direct_load(vitb16):
    state, src = vitb16["state"], vitb16["file"]
    out = vitb16["folder"] / "voc-inductive.pt"
    result = CliRunner().invoke(main, ["convert", "otseg", str(src), "--dataset", "voc", "--setting", "inductive",
                                       "--out", str(out), "--text", str(EMBEDDINGS / "voc12_otseg.npy")])
    assert result.exit_code == 0, result.output
    assert "dropped 30 dead weights (5,782,016 values" in result.output
    ckpt = ckpt_io.load(out)
    assert ckpt["train_config"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert ckpt["train_config"]["meta"]["exp_name"] == "vpt_seg_zero_vit-b_512x512_20k_12_10.py"
    assert (ckpt["dataset"], ckpt["setting"], ckpt["step"], ckpt["unseen"]) == ("voc", "inductive", 20000,
                                                                                 [15, 16, 17, 18, 19])
    assert len(ckpt["model"]) == 44 and len(ckpt["clip"]) == 152 and "optimizer" not in ckpt
    assert torch.equal(ckpt["clip"]["positional_embedding"], state["backbone.positional_embedding"])  # as stored
    assert ckpt["model_config"]["weights"] == "checkpoint" and ckpt["model_config"]["clip_image_size"] == 512
    shipped = torch.from_numpy(np.load(EMBEDDINGS / "voc12_otseg.npy").astype(np.float32))
    assert ckpt["text"].dtype == torch.float32 and torch.equal(ckpt["text"], shipped)

    converted, _ = ckpt_io.restore_model(out, torch.device("cpu"))
    direct = direct_model(state, 512)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = converted(images, None, shipped), direct(images, None, shipped)
        # OTSeg's position embedding at a 4 x 4 grid: the stored 32 x 32 table resized bilinearly, CLS row kept
        patches, cls_input, _ = converted.encoder._embed(images)
        pos, w = state["backbone.positional_embedding"], VITB16["width"]
        grid = F.interpolate(pos[1:].reshape(1, 32, 32, w).permute(0, 3, 1, 2), size=(4, 4), mode="bilinear",
                             align_corners=False).reshape(w, 16).permute(1, 0)
        conv = F.conv2d(images, state["backbone.conv1.weight"], stride=16).flatten(2).transpose(1, 2)
        torch.testing.assert_close(patches, conv + grid)
        assert torch.equal(cls_input, state["backbone.class_embedding"] + pos[0])
        full, _, _ = converted.encoder._embed(torch.zeros(1, 3, 512, 512))  # the training grid: no resize at all
        assert torch.equal(full[0], pos[1:])
    assert a["decoder"].shape == (2, 20, 64, 64) and torch.isfinite(a["decoder"]).all()
    assert torch.equal(a["decoder"], b["decoder"]) and torch.equal(a["mps"], b["mps"])


def test_vitb16_renamed_key_and_wrong_shape_are_refused_listing_them(vitb16):
    layout = expected_layout("ViT-B-16", 10, 512)
    renamed = dict(vitb16["state"])
    renamed["decode_head.q_proj.weights"] = renamed.pop("decode_head.q_proj.weight")
    with pytest.raises(OCZSSError, match=r"x\.pth is not an OTSeg checkpoint .*376 keys.*missing \(1\): "
                                         r"decode_head\.q_proj\.weight; unexpected \(1\): decode_head\.q_proj\.weights$"):
        check_layout(renamed, layout, "x.pth")
    reshaped = dict(vitb16["state"])
    reshaped["decode_head.decoder_1.layers.1.linear1.weight"] = torch.zeros(1024, 512)
    with pytest.raises(OCZSSError, match=r"wrong shape \(1\): decode_head\.decoder_1\.layers\.1\.linear1\.weight "
                                         r"\[1024, 512\] \(expected \[2048, 512\]\)$"):
        check_layout(reshaped, layout, "x.pth")


def test_file_with_a_renamed_key_or_a_wrong_shape_writes_nothing(tmp_path, tiny_text):
    state = otseg_state(TINY)
    state["backbone.prompt_norms.weight"] = state.pop("backbone.prompt_norm.weight")
    with pytest.raises(OCZSSError, match=r"missing \(1\): backbone\.prompt_norm\.weight; unexpected \(1\): "
                                         r"backbone\.prompt_norms\.weight"):
        tiny_convert(tmp_path, tiny_text, state)
    state = otseg_state(TINY)
    state["backbone.conv1.weight"] = torch.zeros(64, 3, 14, 14)
    with pytest.raises(OCZSSError, match=r"wrong shape \(1\): backbone\.conv1\.weight \[64, 3, 14, 14\]"):
        tiny_convert(tmp_path, tiny_text, state)
    assert not (tmp_path / "out.pt").exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("where", ["meta", "state_dict"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, tiny_text, where):
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(Payload(live))).close()  # the payload is real: plain unpickling runs it
    assert live.exists()
    marker = tmp_path / "marker"
    state, meta = otseg_state(TINY), otseg_meta()
    if where == "meta":
        meta["seed"] = Payload(marker)
    else:
        state["backbone.proj"] = Payload(marker)
    src = write_mmseg(tmp_path / "evil.pth", state, meta)
    with pytest.raises(OCZSSError, match=r"evil\.pth: refused, .*\((builtins|io)\.open\); nothing in it was run"):
        convert_otseg(src, "voc", "inductive", tmp_path / "out.pt", tiny_text, backbone="tiny")
    result = CliRunner().invoke(main, ["convert", "otseg", str(src), "--dataset", "voc", "--setting", "inductive",
                                       "--out", str(tmp_path / "out.pt"), "--text", str(tiny_text)])
    assert result.exit_code == 2 and "refused" in result.output
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def as_numpy1(path: Path) -> None:
    """Rewrite a checkpoint's pickle with numpy 1.x's module names (numpy.core), as an mmcv-era file has them."""
    with zipfile.ZipFile(path) as src:
        records = [(info.filename, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for name, data in records:
            dst.writestr(name, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                         if name.endswith("data.pkl") else data)


def test_numpy_meta_values_load_and_are_stored_plain(tmp_path, tiny_text):
    meta = otseg_meta()
    meta.update(seed=np.int64(42), iter=np.int64(9999), time=np.float64(1.5), PALETTE=np.zeros((20, 3), np.uint8))
    src = write_mmseg(tmp_path / "numpy1.pth", otseg_state(TINY), meta)
    as_numpy1(src)
    assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(src)
    convert_otseg(src, "voc", "inductive", tmp_path / "out.pt", tiny_text, backbone="tiny")
    ckpt = ckpt_io.load(tmp_path / "out.pt")  # weights_only, no numpy allowed
    assert ckpt["train_config"]["meta"]["seed"] == 42 and type(ckpt["train_config"]["meta"]["seed"]) is int
    assert ckpt["step"] == 10000 and ckpt["train_config"]["load_text_embedding"] == \
        "Path/to/configs/_base_/datasets/text_embedding/voc12_otseg.npy"


def test_meta_contradictions_are_refused(tmp_path, tiny_text, caplog):
    with pytest.raises(OCZSSError, match="trained on 59 classes .* --dataset voc has 20"):
        tiny_convert(tmp_path, tiny_text, meta=otseg_meta(classes=[f"c{i}" for i in range(59)]))
    st = otseg_meta(extra="\n    self_training=True,", exp_name="vpt_seg_zero_vit-b_512x512_10k_12_10_st.py")
    with pytest.raises(OCZSSError, match="trained transductive .*self_training=True.* pass --setting transductive"):
        tiny_convert(tmp_path, tiny_text, meta=st)
    with pytest.raises(OCZSSError, match="was trained inductive .* pass --setting inductive"):
        tiny_convert(tmp_path, tiny_text, setting="fully")
    zegclip = otseg_meta()
    zegclip["config"] = zegclip["config"].replace("type='OTSeg'", "type='ZegCLIP'")
    with pytest.raises(OCZSSError, match="ZegCLIP checkpoint"):
        tiny_convert(tmp_path, tiny_text, meta=zegclip)
    assert not (tmp_path / "out.pt").exists()
    tiny_convert(tmp_path, tiny_text, meta=None, setting="transductive")  # a bare state dict: warned, converted
    assert "has no meta: --setting transductive cannot be checked" in caplog.text
    assert "loss buffer is sized for 15 classes; OTSeg's voc transductive config sizes it for 20" in caplog.text
    with pytest.raises(OCZSSError, match="already exists"):
        tiny_convert(tmp_path, tiny_text, meta=None, setting="transductive")


def test_text_must_fit_the_dataset(tmp_path):
    with pytest.raises(OCZSSError, match=r"context_otseg\.npy: shape \[59, 8, 512\], but voc needs \[20, templates, "
                                         r"32\].*VOC takes voc12_otseg\.npy"):
        tiny_convert(tmp_path, EMBEDDINGS / "context_otseg.npy")


def test_converted_checkpoint_evaluates_offline_and_needs_text_for_new_classes(tmp_path, tiny_text):
    src, summary = tiny_convert(tmp_path, tiny_text)
    root = make_voc(tmp_path / "VOC2012", val=("d", "e"))
    report = evaluate(summary["out"], "voc", data_root=str(root), device="cpu", workers=0, progress=False)
    assert (report["images"], report["setting"], report["calibration"], report["weights"]) == (2, "inductive", 0.1,
                                                                                              "checkpoint")
    assert report["train_config"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert len(report["iou"]) == 20 and not report["random_weights"] and report["pAcc"] >= 0
    segmenter = oczss.load(summary["out"], device="cpu")  # loads without a text tower ...
    with pytest.raises(OCZSSError, match="without a text tower .* --text"):  # ... and says so for new class names
        segmenter(root / "JPEGImages" / "d.jpg", ["cat", "dog"])
    _, fully = tiny_convert(tmp_path, tiny_text, meta=otseg_meta(extra="\n    novel_class=[],"), setting="fully",
                            name="fully.pt")
    report = evaluate(fully["out"], "voc", data_root=str(root), device="cpu", workers=0, progress=False)
    assert (report["setting"], report["calibration"], report["unseen"]) == ("fully", 0.0, [15, 16, 17, 18, 19])


def test_embedded_clip_weights_are_checked_and_never_built_without_the_checkpoint(tmp_path, tiny_text):
    with pytest.raises(OCZSSError, match="stored inside an oczss checkpoint"):
        build_model(OCZSSConfig.otseg(backbone="tiny", weights="checkpoint"))
    with pytest.raises(OCZSSError, match="without a text tower"):
        load_tower("tiny", "checkpoint", "text")
    _, summary = tiny_convert(tmp_path, tiny_text)
    ckpt = ckpt_io.load(summary["out"])
    ckpt["clip"]["proj"] = ckpt["clip"]["proj"] + 1e-3
    ckpt_io.save(tmp_path / "altered.pt", ckpt)
    with pytest.raises(OCZSSError, match="trained on CLIP weights"):
        ckpt_io.restore_model(tmp_path / "altered.pt", torch.device("cpu"))
    del ckpt["clip"]
    ckpt_io.save(tmp_path / "no-clip.pt", ckpt)
    with pytest.raises(OCZSSError, match="holds no CLIP state dict"):
        ckpt_io.restore_model(tmp_path / "no-clip.pt", torch.device("cpu"))
