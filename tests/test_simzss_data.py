"""SimZSS data side: `data prepare coco-captions` from the official zips and folders, its check, the caption
dataset, concepts from a vocabulary and from spaCy (up to its model), and concept spans on CLIP's tokens."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import FIXTURE_CAPTIONS, make_coco_captions

from oczss.errors import OCZSSError
from oczss.pipeline.data.caption_check import check_captions, format_caption_report
from oczss.pipeline.data.caption_tokens import TokenAligner, collate
from oczss.pipeline.data.captions import CaptionDataset, parse_captions
from oczss.pipeline.data.concept_vocabulary import Vocabulary, load_vocabulary
from oczss.pipeline.data.concepts import ConceptConfig, SpacyConcepts, build, load_spacy, open_label
from oczss.pipeline.data.prepare import prepare


@pytest.fixture(scope="module")
def captions_root(tmp_path_factory) -> Path:
    return make_coco_captions(tmp_path_factory.mktemp("coco") / "MSCOCO")


def _raw_zips(root: Path, raw: Path) -> Path:
    """The publishers' downloads made from a prepared root: annotations_trainval2017.zip, train2017.zip, val2017.zip
    (extra members as in the real zip: instances files, a folder entry)."""
    raw.mkdir(parents=True)
    with zipfile.ZipFile(raw / "annotations_trainval2017.zip", "w") as z:
        z.writestr("annotations/", "")
        for split in ("train", "val"):
            z.write(root / "annotations" / f"captions_{split}2017.json", f"annotations/captions_{split}2017.json")
            z.writestr(f"annotations/instances_{split}2017.json", "{}")
    for split in ("train", "val"):
        with zipfile.ZipFile(raw / f"{split}2017.zip", "w") as z:
            for f in sorted((root / f"{split}2017").iterdir()):
                z.write(f, f"{split}2017/{f.name}")
    return raw


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_from_zips_and_from_folders_gives_the_official_files(captions_root, tmp_path):
    raw = _raw_zips(captions_root, tmp_path / "raw")
    prepare("coco-captions", raw, tmp_path / "out", workers=1)
    assert _tree(tmp_path / "out") == _tree(captions_root)  # images and both JSON files byte for byte
    extracted = tmp_path / "raw-extracted"
    shutil.copytree(captions_root / "annotations", extracted / "annotations")
    for split in ("train", "val"):
        shutil.copytree(captions_root / f"{split}2017", extracted / "images" / f"{split}2017")
    prepare("coco-captions", extracted, tmp_path / "out2", workers=2)
    assert _tree(tmp_path / "out2") == _tree(captions_root)


def test_prepare_names_what_is_missing_before_writing(captions_root, tmp_path):
    raw = _raw_zips(captions_root, tmp_path / "raw")
    (raw / "annotations_trainval2017.zip").unlink()
    with pytest.raises(OCZSSError, match="annotations_trainval2017.zip"):
        prepare("coco-captions", raw, tmp_path / "out")
    raw = _raw_zips(captions_root, tmp_path / "raw2")
    with zipfile.ZipFile(raw / "val2017.zip", "w") as z:  # val images without the second one
        first = sorted((captions_root / "val2017").iterdir())[0]
        z.write(first, f"val2017/{first.name}")
    with pytest.raises(OCZSSError, match=r"COCO val2017 images for the captions: 1 expected file\(s\) missing"):
        prepare("coco-captions", raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_check_passes_a_sound_root_and_names_every_problem(captions_root, tmp_path):
    report = check_captions(captions_root, workers=1)
    assert report["ok"], report["problems"]
    train = report["splits"][0]
    assert (train["images"], train["captions"], train["captions_per_image"], train["decoded"]) == (4, 8, [2, 2], 4)
    assert any("official figure is 118,287 (a subset)" in w for w in report["warnings"])
    bad = shutil.copytree(captions_root, tmp_path / "bad")
    images = sorted((bad / "train2017").iterdir())
    images[0].unlink()
    images[1].write_bytes(b"not a jpeg")
    shutil.copy(images[2], bad / "train2017" / "000000000001.jpg")
    doc = json.loads((bad / "annotations" / "captions_val2017.json").read_text())
    doc["annotations"][0]["caption"] = "  "
    (bad / "annotations" / "captions_val2017.json").write_text(json.dumps(doc))
    report = check_captions(bad, workers=2)
    text = format_caption_report(report)
    assert not report["ok"] and len(report["problems"]) == 4, text
    for expected in (f"image missing: {images[0]}", f"unreadable image: {images[1]}",
                     "image without captions: " + str(bad / "train2017" / "000000000001.jpg"), "empty caption of"):
        assert expected in text


def test_parse_refuses_what_is_not_the_coco_layout():
    good = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": "x"}]}
    assert parse_captions(json.dumps(good), "f.json") == {"a.jpg": ("x",)}
    with pytest.raises(OCZSSError, match="f.json: not JSON"):
        parse_captions("{", "f.json")
    with pytest.raises(OCZSSError, match="'images' and 'annotations'"):
        parse_captions(json.dumps({"images": []}), "f.json")
    with pytest.raises(OCZSSError, match=r"annotations\[0\] refers to image id 2"):
        parse_captions(json.dumps({**good, "annotations": [{"image_id": 2, "caption": "x"}]}), "f.json")


def test_caption_dataset_samples_and_missing_root(captions_root, tmp_path):
    samples = CaptionDataset(captions_root).samples("train")
    assert [s.image_id for s in samples] == ["000000000139", "000000001139", "000000002139", "000000003139"]
    assert samples[1].captions == FIXTURE_CAPTIONS[1] and samples[1].image.is_file()
    with pytest.raises(OCZSSError, match="coco-captions val split: missing .*captions_val2017.json"):
        CaptionDataset(tmp_path).samples("val")


def test_vocabulary_concepts_longest_match_plurals_and_synonyms():
    extract = build(ConceptConfig(source="vocabulary"))
    text = "two men ride motorcycles past a dining table, hot dogs and knives."
    found = extract([text])[0]
    assert [c.name for c in found] == ["person", "motorbike", "dining table", "hot dog", "knife"]
    assert [text[a:b] for a, b in found[2].chars] == ["dining", "table"]
    vocab = load_vocabulary("benchmarks")
    assert found[0].label == vocab.names.index("person") and found[1].label == vocab.names.index("motorbike")
    assert "building" in vocab.names and "building other" not in vocab.names  # COCO-Stuff's suffix dropped


def test_vocabulary_file_and_config_errors(tmp_path):
    f = tmp_path / "concepts.txt"
    f.write_text("# mine\ndog, puppy\ncat\n\n")
    vocab = load_vocabulary(str(f))
    assert vocab.names == ["dog", "cat"] and vocab.match(["puppies"]) == (0, 1)
    with pytest.raises(OCZSSError, match="vocabulary .*: no such file"):
        ConceptConfig(vocabulary=str(tmp_path / "missing.txt"))
    with pytest.raises(OCZSSError, match="needs a vocabulary"):
        ConceptConfig(source="vocabulary", vocabulary="none")
    with pytest.raises(OCZSSError, match="source 'tagger'"):
        ConceptConfig(source="tagger")


def test_spacy_path_up_to_its_model():
    with pytest.raises(OCZSSError) as e:
        load_spacy("en_core_web_sm")
    assert str(e.value).startswith("spaCy model 'en_core_web_sm' is not installed: python -m spacy download "
                                   "en_core_web_sm") and "\n" not in str(e.value)


class _TaggedPipeline:
    """Stands in for a spaCy model: hands out the tagged and parsed Doc a model would make of the one caption."""

    def __init__(self, text, words, pos, deps, heads, lemmas):
        import spacy
        from spacy.tokens import Doc

        spaces = [True] * (len(words) - 1) + [False]
        self.doc = Doc(spacy.blank("en").vocab, words=words, spaces=spaces, pos=pos, deps=deps, heads=heads,
                       lemmas=lemmas)
        assert self.doc.text == text

    def pipe(self, texts, batch_size):
        return [self.doc for _ in texts]


def test_spacy_concepts_root_with_last_compound_lemmatised_and_filtered():
    text = "a tennis player holds two rackets near a brown dog"
    nlp = _TaggedPipeline(text, text.split(), ["DET", "NOUN", "NOUN", "VERB", "NUM", "NOUN", "ADP", "DET", "ADJ",
                                               "NOUN"],
                          ["det", "compound", "nsubj", "ROOT", "nummod", "dobj", "prep", "det", "amod", "pobj"],
                          [2, 2, 3, 3, 5, 3, 5, 9, 9, 6], ["a", "tennis", "player", "hold", "two", "racket", "near",
                                                           "a", "brown", "dog"])
    found = SpacyConcepts(nlp, None)([text])[0]
    assert [c.name for c in found] == ["tennis player", "racket", "dog"]
    assert [[text[a:b] for a, b in c.chars] for c in found] == [["tennis", "player"], ["rackets"], ["dog"]]
    assert found[0].label == open_label("tennis player")
    vocab = Vocabulary.from_groups([("dog",), ("racket", "raquet")])
    kept = build(ConceptConfig(source="spacy", vocabulary="benchmarks"), nlp=nlp)([text])[0]
    assert [c.name for c in kept] == ["dog"]  # the benchmarks name neither "tennis player" nor "racket"
    assert [c.label for c in SpacyConcepts(nlp, vocab)([text])[0]] == [1, 0]


def test_spans_map_to_the_concept_words_tokens():
    aligner = TokenAligner()
    caption = "A Hot-Dog &amp; two Skateboarders' giraffes on a dining   table!"
    cleaned = aligner.clean(caption)
    assert cleaned == "a hot-dog & two skateboarders' giraffes on a dining table!"
    concepts = build(ConceptConfig(source="vocabulary"))([cleaned])[0]
    encoded = aligner.encode(cleaned, concepts, max_concepts=32, max_tokens=16)
    assert torch.equal(encoded.ids, aligner.tokenizer(caption)[0])  # the tokenizer's own ids
    decoder = aligner.tokenizer.decoder
    words = [[decoder[int(encoded.ids[p])].replace("</w>", "") for p in span] for span in encoded.spans]
    assert words == [["hot", "dog"], ["gira", "ffes"], ["dining", "table"]]  # no '-', '&' or '!' token
    assert [c.name for c in concepts] == ["hot dog", "giraffe", "dining table"]


def test_spans_past_the_context_and_long_concepts_are_dropped_and_batches_pad():
    aligner = TokenAligner()
    cleaned = aligner.clean("a dog " + "very " * 80 + "and a cat")
    concepts = build(ConceptConfig(source="vocabulary"))([cleaned])[0]
    assert [c.name for c in concepts] == ["dog", "cat"]
    long = aligner.encode(cleaned, concepts, max_concepts=32, max_tokens=16)
    assert long.spans == ((2,),)  # "cat" lies past the 77-token context
    short = aligner.encode("a dining table", build(ConceptConfig(source="vocabulary"))(["a dining table"])[0],
                           max_concepts=32, max_tokens=1)
    assert short.spans == ()
    batch = collate([long, short])
    assert batch.tokens.shape == (2, 77) and batch.spans.tolist() == [[[2]], [[-1]]]
    assert batch.labels.tolist() == [[concepts[0].label], [-1]]
