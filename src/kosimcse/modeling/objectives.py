"""ESimCSE's momentum encoder and word repetition, PromptBERT's prompt, DiffCSE's replaced-token detector."""

from __future__ import annotations

import copy

import torch
from torch import nn

from kosimcse.evaluation.similarity import full_precision
from kosimcse.modeling.distill import FrozenCopy

# PromptBERT's 'This sentence : "[X]" means [MASK] .' in Korean; the [MASK] state is the sentence vector.
DEFAULT_PROMPT = '이 문장 : "[X]" 의 의미는 [MASK] 이다.'


class MomentumEncoder(FrozenCopy):
    """ESimCSE's EMA copy of the encoder, which embeds the queue's negatives."""

    def __init__(self, encoder: nn.Module, momentum: float = 0.995):
        if not 0.0 <= momentum < 1.0:
            raise ValueError("momentum must be in [0, 1)")
        super().__init__(encoder)
        self.momentum = momentum

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        """``ema = m * ema + (1 - m) * online`` for every parameter."""
        for ema, param in zip(self.encoder.parameters(), online.parameters()):
            ema.lerp_(param.detach().to(ema.dtype), 1.0 - self.momentum)


def repeat_words(ids: list[int], dup_rate: float, generator: torch.Generator | None = None) -> list[int]:
    """ESimCSE's word repetition: double a random ``0..max(2, dup_rate * n)`` of the n tokens (no special tokens) in
    place, so that the positive no longer shares the anchor's length (SimCSE's length shortcut)."""
    n = len(ids)
    if n == 0 or dup_rate <= 0:
        return list(ids)
    dup_len = int(torch.randint(0, max(2, int(dup_rate * n)) + 1, (1,), generator=generator))
    picked = set(torch.randperm(n, generator=generator)[: min(dup_len, n)].tolist())
    out: list[int] = []
    for i, token in enumerate(ids):
        out += [token, token] if i in picked else [token]
    return out


def encode_batch(tokenizer, texts: list[str], max_length: int, prefix: str = "", template: str = "",
                 dup_rate: float = 0.0, generator: torch.Generator | None = None) -> dict:
    """Tokenise ``texts`` as the whole toolkit does, optionally inside a prompt template or with word repetition.
    ``prefix + text`` is one string, so a repeated positive doubles only the sentence's own tokens and SentencePiece
    adds no stray "▁"; a template survives truncation (only the sentence is cut)."""
    if not template and dup_rate <= 0:
        return tokenizer([prefix + t for t in texts], padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt")
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    if template:
        head, tail = _template_parts(tokenizer, template)
        empty = tokenizer("", add_special_tokens=True)["input_ids"]  # the special tokens around a sentence
        lead = empty[:1] if empty and empty[0] in {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None} else []
        before, after = lead + head, tail + empty[len(lead):]
    rows = []
    for text in texts:
        if template:
            content = tokenizer(prefix + text, add_special_tokens=False)["input_ids"]
        else:
            # Exactly the anchor's tokenisation (the plain call above), split around its special tokens.
            enc = tokenizer(prefix + text, truncation=True, max_length=max_length, return_special_tokens_mask=True)
            ids = enc["input_ids"]
            inner = [i for i, flag in enumerate(enc["special_tokens_mask"]) if not flag]
            first, last = (inner[0], inner[-1] + 1) if inner else (len(ids), len(ids))
            before, content, after = ids[:first], ids[first:last], ids[last:]
        # The prefix's own tokens: the leading ones that ``prefix + text`` shares with the prefix alone.
        fixed = next((i for i, (a, b) in enumerate(zip(prefix_ids, content)) if a != b),
                     min(len(prefix_ids), len(content)))
        body = repeat_words(content[fixed:], dup_rate, generator)
        budget = max(max_length - len(before) - len(after), 1)
        rows.append({"input_ids": before + (content[:fixed] + body)[:budget] + after})
    batch = tokenizer.pad(rows, padding=True, return_tensors="pt")
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" not in batch:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return batch


def _template_parts(tokenizer, template: str) -> tuple[list[int], list[int]]:
    if template.count("[X]") != 1 or "[MASK]" not in template:
        raise ValueError(f"a prompt template needs one [X] and a [MASK]: {template!r}")
    if tokenizer.mask_token is None:
        raise ValueError("prompt pooling needs a tokenizer with a mask token")
    return tuple(tokenizer(part.replace("[MASK]", tokenizer.mask_token), add_special_tokens=False)["input_ids"]
                 for part in template.split("[X]"))


def pool_at_mask(last_hidden_state: torch.Tensor, input_ids: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """The hidden state at the template's [MASK] (its last one, since the sentence comes before it)."""
    is_mask = input_ids == mask_token_id
    if not bool(is_mask.any(dim=1).all()):
        raise ValueError("a row has no [MASK] token: prompt pooling needs the prompt template applied")
    last = (is_mask * torch.arange(input_ids.size(1), device=input_ids.device)).argmax(dim=1)
    return last_hidden_state[torch.arange(input_ids.size(0), device=input_ids.device), last]


def inner_tokens(attention_mask: torch.Tensor) -> torch.Tensor:
    """True at the attended tokens between each row's first and last one (its [CLS]/<s> and [SEP]/</s>)."""
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device).expand_as(attention_mask)
    return (positions > 0) & (positions < lengths - 1) & attention_mask.bool()


def replace_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, ratio: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``ratio`` of each row's inner tokens by tokens drawn from the batch; return (ids, replaced). DiffCSE
    draws from an MLM generator; the batch's own tokens need none (e5 has no MLM head). Equal draws are not replaced."""
    inner = inner_tokens(attention_mask)
    chosen = inner & (torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < ratio)
    pool = input_ids[inner]
    if pool.numel() == 0:
        return input_ids.clone(), torch.zeros_like(inner)
    draws = pool[torch.randint(0, pool.numel(), input_ids.shape, generator=generator, device=input_ids.device)]
    corrupted = torch.where(chosen, draws, input_ids)
    return corrupted, inner & (corrupted != input_ids)


class ConditionalDiscriminator(nn.Module):
    """DiffCSE's discriminator (training only): a copy of the encoder reads the corrupted sentence, its first token
    replaced by the original's sentence vector, and tells each token whether it was replaced."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        # The token matrix is shared (as ELECTRA does): the memo entry makes deepcopy keep it, as for big vocabularies
        # (e5: 96M of 118M weights) a copy would double memory and AdamW time.
        embeddings = encoder.get_input_embeddings()
        self.encoder = copy.deepcopy(encoder, {id(embeddings): embeddings})
        self.classifier = nn.Linear(encoder.config.hidden_size, 1)

    def forward(self, corrupted_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_vectors: torch.Tensor,
                replaced: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of replaced-token detection over the inner tokens."""
        embeds = self.encoder.get_input_embeddings()(corrupted_ids)
        embeds = torch.cat([sentence_vectors.unsqueeze(1).to(embeds.dtype), embeds[:, 1:]], dim=1)
        states = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask, return_dict=True).last_hidden_state
        with full_precision(states.device):  # a hidden -> 1 projection: float32 costs nothing here
            logits = self.classifier(states.to(self.classifier.weight.dtype)).squeeze(-1).float()
        inner = inner_tokens(attention_mask)
        return nn.functional.binary_cross_entropy_with_logits(logits[inner], replaced[inner].float())
