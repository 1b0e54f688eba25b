"""Toy tokenizer: one token per character, exact round trip, save/load as an HF folder."""

import random

from transformers import AutoTokenizer

from sppd.toy.config import ToyWorldConfig
from sppd.toy.tokenizer import build_toy_tokenizer
from sppd.toy.world import corpus_text, sample_questions

TEXT = "Q: 7+3*4-5\nStep 1: 3*4=12, 7+12-5\nThe answer is \\boxed{14}"


def test_one_token_per_character_with_bos():
    tok = build_toy_tokenizer()
    ids = tok(TEXT)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert len(ids) == len(TEXT) + 1
    assert tok.convert_ids_to_tokens(ids[1:4]) == ["Q", ":", " "]
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok(TEXT, add_special_tokens=False)["input_ids"] == ids[1:]
    assert tok.chat_template is None


def test_round_trip_on_corpus_text():
    tok = build_toy_tokenizer()
    cfg = ToyWorldConfig()
    rng = random.Random(0)
    texts = [corpus_text(q, cfg, rng)[0] for q in sample_questions(cfg, "train", 200, 0, unique=False)]
    for text in texts + [TEXT, "  two  spaces \n\n", "-5+2"]:
        assert tok.decode(tok.encode(text), skip_special_tokens=True) == text
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_unknown_characters_map_to_unk():
    tok = build_toy_tokenizer()
    ids = tok("a\u00e9b", add_special_tokens=False)["input_ids"]
    assert ids[1] == tok.unk_token_id and len(ids) == 3


def test_save_and_load(tmp_path):
    tok = build_toy_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    assert loaded.decode(loaded.encode(TEXT), skip_special_tokens=True) == TEXT
    assert (loaded.pad_token, loaded.bos_token, loaded.eos_token) == ("<pad>", "<bos>", "<eos>")
    assert loaded.padding_side == "left"
    batch = loaded(["Q: 1+2\n", "Q: 11+2\n"], padding=True)
    assert batch["input_ids"][0][0] == loaded.pad_token_id and batch["attention_mask"][0][0] == 0
