import math

import numpy as np
import pytest
import torch

from trainer.backbones import check_backbone_name, load_backbone
from trainer.configs import DualEncoderConfig
from trainer.model import POOLERS, build_model, embedding_scale, padded_audio_rows

DEBUG = DualEncoderConfig(llm="debug")


@pytest.fixture(scope="module")
def model():
    return build_model(DEBUG, codebook_size=100, seed=3)


def test_padded_audio_rows():
    assert [padded_audio_rows(k) for k in (1, 64, 65, 100, 256, 1000)] == [
        64,
        64,
        128,
        128,
        256,
        1024,
    ]
    with pytest.raises(ValueError):
        padded_audio_rows(0)


@pytest.mark.parametrize("k", [100, 256])
def test_extension_keeps_text_rows_and_adds_exactly_the_codebook_rows(k):
    original = load_backbone("debug").model.get_input_embeddings().weight.detach().clone()
    m = build_model(DEBUG, codebook_size=k)
    table = m.embedding.table().detach()
    t, dim = original.shape
    assert table.shape == (t + padded_audio_rows(k), dim)
    assert m.audio_offset == t
    assert torch.equal(table[:t], original)
    audio = table[t:]
    # Random rows at the scale of the text rows, none left at zero.
    assert audio.abs().sum(1).min() > 0
    assert 0.5 < float(audio.std() / original.std()) < 2.0


def test_audio_rows_get_the_embedding_modules_scale(model):
    emb = model.embedding
    assert emb.scale == pytest.approx(math.sqrt(64))  # Gemma: sqrt(hidden)
    assert embedding_scale(emb.text) == pytest.approx(emb.scale)
    with torch.no_grad():
        saved = emb.audio[7].clone()
        emb.audio[7] = emb.text.weight[42]
        out = emb(torch.tensor([[42, model.audio_offset + 7]]))
        emb.audio[7] = saved
    assert torch.equal(out[0, 0], out[0, 1])


def test_encode_speech_offsets_ids_behind_the_prefix(model):
    enc = model.encode_speech([np.array([0, 5, 99], dtype=np.int16), [7]], ["fr", "de"])
    ids, mask, pool = enc
    prefix_fr = model.prefix_ids("fr", "speech")
    head = [model.tokenizer.bos_token_id]
    n_lead = len(head) + len(prefix_fr)
    assert ids[0, :n_lead].tolist() == head + prefix_fr
    assert ids[0, n_lead:].tolist() == [model.audio_offset + c for c in (0, 5, 99)]
    assert mask[1].sum() == len(head) + len(model.prefix_ids("de", "speech")) + 1
    assert pool[0].tolist() == [0] * n_lead + [1, 1, 1]  # pooled over content only
    assert model.tokenizer.decode(prefix_fr) == "[fr] [speech]"
    with pytest.raises(ValueError, match="outside the codebook"):
        model.encode_speech([[100]], ["fr"])


def test_speech_is_truncated_to_max_speech_tokens():
    m = build_model(DualEncoderConfig(llm="debug", max_speech_tokens=5), codebook_size=64)
    enc = m.encode_speech([list(range(20))], ["fr"])
    assert int(enc.pool_mask.sum()) == 5


def test_gradients_reach_audio_rows_not_frozen_text_rows(model):
    model.zero_grad(set_to_none=True)
    speech = model.encode_speech([[1, 2, 3], [3, 60]], ["fr", "fr"])
    text = model.encode_text(["ba de", "ki"], ["fr", "fr"])
    s, t, scale = model(speech, text)
    (scale * (s @ t.T)).logsumexp(1).sum().backward()
    grad = model.embedding.audio.grad
    used = {1, 2, 3, 60}
    nonzero = set(torch.nonzero(grad.abs().sum(1)).flatten().tolist())
    assert nonzero == used
    assert model.embedding.text.weight.grad is None
    assert not model.embedding.text.weight.requires_grad
    assert model.frozen_parameter_names() == {"backbone.embed_tokens.text.weight"}
    assert model.logit_scale.grad is not None
    assert model.backbone.layers[0].self_attn.q_proj.weight.grad is not None


def test_train_text_rows_option():
    m = build_model(DualEncoderConfig(llm="debug", train_text_rows=True), codebook_size=64)
    assert m.embedding.text.weight.requires_grad
    assert m.frozen_parameter_names() == set()


def test_padding_does_not_change_embeddings(model):
    model.eval()
    alone = model.embed_speech([[4, 5, 6]], ["fr"])
    batched = model.embed_speech([[4, 5, 6], list(range(30))], ["fr", "fr"])
    text_alone = model.embed_text(["ba"], ["de"])
    text_batched = model.embed_text(["ba", "a much longer sentence here"], ["de", "de"])
    assert torch.allclose(alone[0], batched[0], atol=1e-5)
    assert torch.allclose(text_alone[0], text_batched[0], atol=1e-5)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_prefix_changes_the_embedding(model):
    a = model.embed_text(["ba de"], ["fr"])
    b = model.embed_text(["ba de"], ["de"])
    assert not torch.allclose(a, b)


def test_poolers_pick_the_right_positions():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])
    assert POOLERS["mean"](hidden, mask).flatten().tolist() == [1.5, 5.5]
    assert POOLERS["last"](hidden, mask).flatten().tolist() == [2.0, 7.0]
    assert POOLERS["first"](hidden, mask).flatten().tolist() == [1.0, 4.0]


def test_bidirectional_option_lets_early_tokens_see_later_ones():
    def first_state(bidirectional, last_token):
        backbone = load_backbone("debug", bidirectional=bidirectional).model.eval()
        ids = torch.tensor([[2, 10, 11, last_token]])
        with torch.no_grad():
            return backbone(input_ids=ids).last_hidden_state[0, 0]

    assert torch.equal(first_state(False, 12), first_state(False, 13))
    assert not torch.allclose(first_state(True, 12), first_state(True, 13))


def test_layers_truncation_and_hf_dir(debug_backbone_dir):
    full = load_backbone("debug")
    one = load_backbone(f"hf:{debug_backbone_dir}", layers=1)
    assert one.num_layers == 1 and len(one.model.layers) == 1
    assert torch.equal(
        one.model.layers[0].mlp.up_proj.weight, full.model.layers[0].mlp.up_proj.weight
    )
    assert torch.equal(one.model.embed_tokens.weight, full.model.embed_tokens.weight)
    assert one.tokenizer("[fr] ba")["input_ids"] == full.tokenizer("[fr] ba")["input_ids"]
    with pytest.raises(ValueError, match="layers"):
        load_backbone("debug", layers=3)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown backbone"):
        DualEncoderConfig(llm="nope")
    with pytest.raises(ValueError, match="pooling"):
        DualEncoderConfig(llm="debug", pooling="max")
    with pytest.raises(ValueError):
        DualEncoderConfig(llm="debug", prefix_template="[{lang}]")
    check_backbone_name("hf:/some/dir")
    with pytest.raises(ValueError):
        check_backbone_name("hf:")


def test_same_seed_same_model():
    a = build_model(DEBUG, codebook_size=64, seed=1).state_dict()
    b = build_model(DEBUG, codebook_size=64, seed=1).state_dict()
    c = build_model(DEBUG, codebook_size=64, seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["backbone.embed_tokens.audio"], c["backbone.embed_tokens.audio"])


def test_an_encoder_lm_from_a_dir(tmp_path):
    """BERT-style: plain (unscaled) embeddings, position embeddings, an unused pooler."""
    from transformers import BertConfig, BertModel

    from trainer.backbones import byte_tokenizer

    config = BertConfig(
        vocab_size=260,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(tmp_path))
    byte_tokenizer().save_pretrained(str(tmp_path))
    m = build_model(DualEncoderConfig(llm=f"hf:{tmp_path}", layers=1), codebook_size=64)
    assert m.embedding.scale == 1.0 and len(m.backbone.encoder.layer) == 1
    assert m.embedding_parameter_names() == {
        "text": "backbone.embeddings.word_embeddings.text.weight",
        "audio": "backbone.embeddings.word_embeddings.audio",
    }
    # The pooler never sees a gradient: frozen (DDP would reject it), not checkpointed.
    assert set(m.unused_backbone_parameters) == {
        "backbone.pooler.dense.weight",
        "backbone.pooler.dense.bias",
    }
    s, t, scale = m(
        m.encode_speech([[1, 2], [3]], ["fr", "fr"]), m.encode_text(["a", "b"], ["fr"] * 2)
    )
    (scale * s @ t.T).logsumexp(1).sum().backward()
    assert m.embedding.audio.grad[[1, 2, 3]].abs().sum(1).min() > 0
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert all(p.grad is not None for n, p in m.named_parameters() if n in trainable)
