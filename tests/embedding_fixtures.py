"""Helpers of the embedding tests: a guaranteed-offline hub, a tiny random decoder LLM."""

import torch

GPT_WORDS = ["<unk>", "<eos>"] + (
    "movie title star night river ghost love dark city last blue iron release year class "
    "action comedy drama horror romance sci-fi : ; 0 1 2 3 4 5 6 7 8 9"
).split()


def force_offline(monkeypatch):
    """Hub offline for this test whatever the environment says (conftest only sets a default, and
    huggingface_hub reads HF_HUB_OFFLINE once, at import): a hub name must fail at once, not retry."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def make_tiny_decoder(folder, padding_side="left", seed=0):
    """A randomly initialised 1-layer GPT-2 (d=16) and a word-level tokenizer, saved like a hub
    checkpoint. The tokenizer has no pad token (as Llama/GPT-2 ship) and pads on ``padding_side``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(GPT_WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>",
                                        padding_side=padding_side)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(GPT_WORDS), n_positions=64,
                        bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return str(folder)
