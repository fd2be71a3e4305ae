"""Pieces of the objectives beyond plain SimCSE: ESimCSE's momentum encoder and word repetition, PromptBERT's prompt,
DiffCSE's conditional replaced-token detector."""

from __future__ import annotations

import copy

import torch
from torch import nn

from kosimcse.evaluation.similarity import full_precision

# PromptBERT's 'This sentence : "[X]" means [MASK] .' in Korean; the [MASK] state is the sentence vector.
DEFAULT_PROMPT = '이 문장 : "[X]" 의 의미는 [MASK] 이다.'


class MomentumEncoder(nn.Module):
    """An EMA copy of the encoder (ESimCSE); it embeds sentences for the negative queue, without gradients.

    It stays in eval mode (no dropout) whatever ``train()`` says, so its embeddings are the EMA model's own.
    """

    def __init__(self, encoder: nn.Module, momentum: float = 0.995):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError("momentum must be in [0, 1)")
        self.momentum = momentum
        self.encoder = copy.deepcopy(encoder)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        """``ema = m * ema + (1 - m) * online`` for every parameter."""
        for ema, param in zip(self.encoder.parameters(), online.parameters()):
            ema.lerp_(param.detach().to(ema.dtype), 1.0 - self.momentum)

    def forward(self, **inputs):
        with torch.no_grad():
            return self.encoder(**inputs, return_dict=True)


def repeat_words(ids: list[int], dup_rate: float, generator: torch.Generator | None = None) -> list[int]:
    """ESimCSE's word repetition: duplicate a random ``0..max(2, dup_rate * n)`` of the n inner tokens in place.

    ``ids`` holds the tokens without special tokens; the length changes but not the meaning, so the
    positive no longer shares the anchor's length (SimCSE's length shortcut).
    """
    n = len(ids)
    if n == 0 or dup_rate <= 0:
        return list(ids)
    dup_len = int(torch.randint(0, max(2, int(dup_rate * n)) + 1, (1,), generator=generator))
    picked = set(torch.randperm(n, generator=generator)[: min(dup_len, n)].tolist())
    out: list[int] = []
    for i, token in enumerate(ids):
        out.append(token)
        if i in picked:
            out.append(token)
    return out


def encode_batch(tokenizer, texts: list[str], max_length: int, prefix: str = "", template: str = "",
                 dup_rate: float = 0.0, generator: torch.Generator | None = None) -> dict:
    """Tokenise ``texts`` like the rest of the toolkit, optionally inside a prompt template or with word repetition.

    ``prefix + text`` is always tokenised as one string, so that a repeated positive (ESimCSE) holds exactly
    the anchor's tokens with some of them doubled in place: only the sentence's own tokens are repeated, never
    the prefix's nor the special tokens, and a SentencePiece tokenizer gets no stray "▁" between prefix and
    sentence. With a template, only the sentence is truncated so the template (and its [MASK]) always survives;
    with repetition, the positive is cut back to ``max_length`` at the end of the sentence.
    """
    if not template and dup_rate <= 0:
        return tokenizer([prefix + t for t in texts], padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt")
    # The prefix's own tokens: the leading tokens that ``prefix + text`` shares with the prefix alone.
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    if template:
        head, tail = _template_parts(tokenizer, template)
        lead, trail = _special_wrap(tokenizer)
        before, after = lead + head, tail + trail
    rows = []
    for text in texts:
        if template:
            content = tokenizer(prefix + text, add_special_tokens=False)["input_ids"]
        else:
            # Exactly the anchor's tokenisation (the plain call above), split around its special tokens.
            enc = tokenizer(prefix + text, truncation=True, max_length=max_length, return_special_tokens_mask=True)
            ids, special = enc["input_ids"], enc["special_tokens_mask"]
            inner = [i for i, flag in enumerate(special) if not flag]
            first, last = (inner[0], inner[-1] + 1) if inner else (len(ids), len(ids))
            before, content, after = ids[:first], ids[first:last], ids[last:]
        fixed = _shared_start(prefix_ids, content)
        body = content[fixed:]
        if dup_rate > 0:
            body = repeat_words(body, dup_rate, generator)
        budget = max(max_length - len(before) - len(after), 1)
        rows.append({"input_ids": before + (content[:fixed] + body)[:budget] + after})
    batch = tokenizer.pad(rows, padding=True, return_tensors="pt")
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" not in batch:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return batch


def _shared_start(a: list[int], b: list[int]) -> int:
    """How many leading ids ``a`` and ``b`` have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _special_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a single sentence gets before and after it ([CLS] … [SEP], <s> … </s>)."""
    empty = tokenizer("", add_special_tokens=True)["input_ids"]
    starts = {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}
    lead = empty[:1] if empty and empty[0] in starts else []
    return lead, empty[len(lead):]


def _template_parts(tokenizer, template: str) -> tuple[list[int], list[int]]:
    if not template:
        return [], []
    if template.count("[X]") != 1 or "[MASK]" not in template:
        raise ValueError(f"a prompt template needs one [X] and a [MASK]: {template!r}")
    head, tail = template.split("[X]")
    mask = tokenizer.mask_token
    if mask is None:
        raise ValueError("prompt pooling needs a tokenizer with a mask token")
    encode = lambda s: tokenizer(s.replace("[MASK]", mask), add_special_tokens=False)["input_ids"]  # noqa: E731
    return encode(head), encode(tail)


def pool_at_mask(last_hidden_state: torch.Tensor, input_ids: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """The hidden state at the template's [MASK] (its last one, since the sentence comes before it)."""
    is_mask = input_ids == mask_token_id
    if not bool(is_mask.any(dim=1).all()):
        raise ValueError("a row has no [MASK] token: prompt pooling needs the prompt template applied")
    positions = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
    last = torch.where(is_mask, positions, torch.full_like(positions, -1)).max(dim=1).values
    return last_hidden_state[torch.arange(input_ids.size(0), device=input_ids.device), last]


def inner_tokens(attention_mask: torch.Tensor) -> torch.Tensor:
    """True at the attended tokens between each row's first and last one (its [CLS]/<s> and [SEP]/</s>)."""
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device).expand_as(attention_mask)
    return (positions > 0) & (positions < lengths - 1) & attention_mask.bool()


def replace_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, ratio: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``ratio`` of each row's inner tokens with tokens drawn from the batch itself; return (ids, replaced).

    Only inner tokens (``inner_tokens``) are replaced. DiffCSE draws replacements from a frozen MLM generator;
    drawing them from the batch's own tokens needs no second network (e5 ships without an MLM head) and keeps
    their frequencies realistic, at the price of easier, out-of-context replacements. A drawn token equal to the original
    counts as not replaced, as in ELECTRA.
    """
    inner = inner_tokens(attention_mask)
    chosen = inner & (torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < ratio)
    pool = input_ids[inner]
    if pool.numel() == 0:
        return input_ids.clone(), torch.zeros_like(inner)
    draws = pool[torch.randint(0, pool.numel(), input_ids.shape, generator=generator, device=input_ids.device)]
    corrupted = torch.where(chosen, draws, input_ids)
    return corrupted, inner & (corrupted != input_ids)


class ConditionalDiscriminator(nn.Module):
    """DiffCSE's discriminator: a copy of the encoder that reads a corrupted sentence whose first token is replaced
    by the sentence vector of the original, and tells for each token whether it was replaced.

    The detection loss reaches the sentence encoder only through that vector, so the vector must carry what the
    tokens were: the "difference" DiffCSE adds to SimCSE's dropout invariance. Used in training only.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        # The token matrix is shared, as ELECTRA shares it between its two networks: for big vocabularies (e5:
        # 96M of 118M weights) a second copy would double memory and AdamW time, and freezing it freezes both.
        # The memo entry makes deepcopy keep that module as it is instead of copying it first.
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
