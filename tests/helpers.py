"""Test helpers: tiny random-init encoders with a real Korean WordPiece tokenizer, built offline in about a second."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

_RESOURCES = Path(__file__).resolve().parents[1] / "src" / "kosimcse" / "resources" / "sts"

_FALLBACK_TEXTS = [
    "한 남자가 기타를 치고 있다.",
    "여자가 양파를 썰고 있다.",
    "아이들이 공원에서 뛰어 놀고 있다.",
    "고양이가 소파 위에서 자고 있다.",
    "오늘 날씨가 정말 좋네요.",
    "그 영화는 생각보다 재미있었다.",
]


def korean_sample_texts(limit: int = 3000) -> list[str]:
    """Korean sentences for training tiny tokenizers: KorSTS dev from the embedded resources when present."""
    path = _RESOURCES / "sts-dev.tsv"
    if not path.is_file():
        return list(_FALLBACK_TEXTS)
    texts: list[str] = []
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)
        for row in rows:
            if len(row) >= 7:
                texts.extend((row[5], row[6]))
            if len(texts) >= limit:
                break
    return texts + list(_FALLBACK_TEXTS)


def make_tiny_tokenizer(vocab_texts: Iterable[str] | None = None, vocab_size: int = 2000, model_max_length: int = 128):
    """A fast BERT-style WordPiece tokenizer trained on the fly (KorSTS dev by default); a transformers tokenizer."""
    from kosimcse.modeling.tokenizer import train_wordpiece_tokenizer

    texts = list(vocab_texts) if vocab_texts is not None else korean_sample_texts()
    return train_wordpiece_tokenizer(texts, vocab_size=vocab_size, model_max_length=model_max_length)


def make_tiny_sentencepiece_tokenizer(vocab_texts: Iterable[str] | None = None, vocab_size: int = 1500,
                                      model_max_length: int = 128):
    """A fast SentencePiece-style (Unigram + Metaspace "▁") tokenizer like XLM-R's and e5's, trained on the fly."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(vocab_texts) if vocab_texts is not None else korean_sample_texts(1000)
    specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                          unk_token="<unk>", show_progress=False))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", model_max_length=model_max_length,
        model_input_names=["input_ids", "attention_mask"])


def make_tiny_model_dir(path, vocab_texts: Iterable[str] | None = None, hidden: int = 32, layers: int = 2,
                        heads: int = 2, seed: int = 0, model_type: str = "bert", max_length: int = 128,
                        vocab_size: int = 2000) -> Path:
    """Write a random-init BERT (or RoBERTa) encoder + tokenizer into ``path``, loadable offline by AutoModel/AutoTokenizer.

    Weights are saved as safetensors. Same ``seed`` and texts give the same model.
    """
    import torch
    from transformers import AutoModel, BertConfig, RobertaConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tiny_tokenizer(vocab_texts, vocab_size=vocab_size)
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=hidden * 2, pad_token_id=tokenizer.pad_token_id)
    if model_type == "bert":
        config = BertConfig(max_position_embeddings=max_length, **common)
    elif model_type == "roberta":
        # RoBERTa positions start after padding_idx, hence the +2.
        config = RobertaConfig(max_position_embeddings=max_length + 2, bos_token_id=tokenizer.cls_token_id,
                               eos_token_id=tokenizer.sep_token_id, type_vocab_size=1, **common)
    else:
        raise ValueError(f"model_type must be 'bert' or 'roberta', not {model_type!r}")
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
