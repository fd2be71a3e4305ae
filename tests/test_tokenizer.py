"""The WordPiece trainer for from-scratch encoders: Korean pieces stay syllables, and the folder loads anywhere."""

from __future__ import annotations

from helpers import korean_sample_texts


def test_wordpiece_tokenizer_covers_its_korean_text_and_round_trips(tmp_path):
    from transformers import AutoTokenizer

    from kosimcse.modeling.tokenizer import train_wordpiece_tokenizer

    texts = korean_sample_texts(400)
    tok = train_wordpiece_tokenizer(texts, vocab_size=600, model_max_length=64)
    assert tok.model_max_length == 64
    # Every character seen is kept, so the vocabulary can pass vocab_size; a larger size still gives more pieces.
    assert len(tok) < len(train_wordpiece_tokenizer(texts, vocab_size=1200))
    ids = tok(texts[0])["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    # No NFD: the pieces are Hangul syllables, not jamo (U+1100..U+11FF).
    pieces = tok.convert_ids_to_tokens(ids[1:-1])
    assert not any("\u1100" <= ch <= "\u11ff" for piece in pieces for ch in piece)
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == texts[0].replace(" ", "")
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(texts[0])["input_ids"] == ids
