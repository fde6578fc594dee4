"""Decoder-layer models for benchmarks, built at any size on the meta device.

`llama_layer` is a Llama-2-style decoder layer (RMSNorm, q/k/v/o projections, RoPE,
causal attention with grouped KV heads, SwiGLU MLP, residuals) written in plain PyTorch,
so its graph is the operators SN40L's authors fuse into one kernel call. On the meta
device it has shapes but no data: a 7B-class layer compiles without its 400 MB of weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerShape:
    """hidden, heads, kv_heads, mlp: model dims; seq: new tokens; past: cached tokens."""

    hidden: int = 4096
    heads: int = 32
    kv_heads: int = 32
    mlp: int = 11008
    seq: int = 4096
    past: int = 0
    eps: float = 1e-5


@dataclass(frozen=True)
class LlamaSpec:
    """A Llama-style decoder-only model's shape: layer dims, `layers`, `vocab`, and
    `dtype_bytes` per parameter and KV element (2: bf16). Sizes below are in bytes.

    Used by serving (`serve.programs`: phase programs, KV cache) and by Composition of
    Experts (`coe.llama`: expert sizes, TP shards)."""

    name: str
    hidden: int
    heads: int
    kv_heads: int
    mlp: int
    layers: int
    vocab: int
    dtype_bytes: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_params(self) -> int:
        """Parameters of one layer: q/o (hidden x hidden), k/v (hidden x kv_heads x head_dim),
        gate/up/down (hidden x mlp), two RMSNorm weights (hidden)."""
        d, kv = self.head_dim, self.kv_heads * self.head_dim
        return 2 * self.hidden * self.heads * d + 2 * self.hidden * kv + 3 * self.hidden * self.mlp + 2 * self.hidden

    @property
    def params(self) -> int:
        """Parameters: embedding + layers + final norm + LM head (untied)."""
        return 2 * self.vocab * self.hidden + self.layers * self.layer_params + self.hidden

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights (the model in HBM; an expert's size in DDR / host memory)."""
        return self.params * self.dtype_bytes

    @property
    def streamed_bytes(self) -> int:
        """Weight bytes one decode step reads: all but the embedding table (only rows are gathered)."""
        return self.weight_bytes - self.vocab * self.hidden * self.dtype_bytes

    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes of one token over all layers: layers x 2 (K, V) x kv_heads x head_dim x dtype."""
        return self.layers * 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    def kv_bytes(self, tokens: int) -> int:
        """KV cache bytes for `tokens` cached tokens (all layers, K and V)."""
        return tokens * self.kv_bytes_per_token()

    def act_bytes(self, batch: int, tokens: int) -> int:
        """Bytes of one TP all-reduce message: batch x tokens x hidden x dtype bytes."""
        return batch * tokens * self.hidden * self.dtype_bytes

    def layer_shape(self, seq: int, past: int) -> LayerShape:
        """The `LayerShape` of one layer on `seq` new tokens after `past` cached ones."""
        return LayerShape(self.hidden, self.heads, self.kv_heads, self.mlp, seq, past)


#: Shapes from the models' configs: Llama-3.1-8B (GQA 8 KV heads, MLP 14336, vocab 128256),
#: Llama-2-7B (MHA, MLP 11008, vocab 32000) [P, Hugging Face config.json]; `tiny` for tests.
LLAMA_SPECS: dict[str, LlamaSpec] = {
    "llama3.1-8b": LlamaSpec("llama3.1-8b", 4096, 32, 8, 14336, 32, 128256),
    "llama2-7b": LlamaSpec("llama2-7b", 4096, 32, 32, 11008, 32, 32000),
    "tiny": LlamaSpec("tiny", 64, 4, 2, 128, 2, 256),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaLayer(nn.Module):
    """One decoder layer. forward(x [1, seq, hidden], cos/sin [seq, head_dim],
    past_k/past_v [1, kv_heads, past, head_dim] when past > 0) -> [1, seq, hidden]."""

    def __init__(self, s: LayerShape):
        super().__init__()
        self.s = s
        self.head_dim = s.hidden // s.heads
        kv = s.kv_heads * self.head_dim
        self.input_norm = RMSNorm(s.hidden, s.eps)
        self.q_proj = nn.Linear(s.hidden, s.hidden, bias=False)
        self.k_proj = nn.Linear(s.hidden, kv, bias=False)
        self.v_proj = nn.Linear(s.hidden, kv, bias=False)
        self.o_proj = nn.Linear(s.hidden, s.hidden, bias=False)
        self.post_norm = RMSNorm(s.hidden, s.eps)
        self.gate_proj = nn.Linear(s.hidden, s.mlp, bias=False)
        self.up_proj = nn.Linear(s.hidden, s.mlp, bias=False)
        self.down_proj = nn.Linear(s.mlp, s.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        s, d = self.s, self.head_dim
        b, n, _ = x.shape
        h = self.input_norm(x)
        q = self.q_proj(h).view(b, n, s.heads, d).transpose(1, 2)
        k = self.k_proj(h).view(b, n, s.kv_heads, d).transpose(1, 2)
        v = self.v_proj(h).view(b, n, s.kv_heads, d).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if past:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        if s.kv_heads != s.heads:
            rep = s.heads // s.kv_heads
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = ((q @ k.transpose(2, 3)) * (1.0 / math.sqrt(d))).float()
        if n > 1:  # causal, as Hugging Face does it: add finfo.min above the diagonal
            total = k.shape[2]
            row = torch.arange(n, device=x.device).unsqueeze(1) + (total - n)
            col = torch.arange(total, device=x.device).unsqueeze(0)
            scores = scores + (col > row).float() * torch.finfo(torch.float32).min
        attn = torch.softmax(scores, dim=-1).to(q.dtype)
        o = (attn @ v).transpose(1, 2).reshape(b, n, s.hidden)
        x = x + self.o_proj(o)
        h = self.post_norm(x)
        return x + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))


def llama_layer(shape: LayerShape, dtype: torch.dtype = torch.bfloat16, device: str = "meta") -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The layer and its example inputs (on `device`; "meta" = shapes only)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaLayer(shape).to(dtype).eval()
        d = shape.hidden // shape.heads
        x = torch.randn(1, shape.seq, shape.hidden, dtype=dtype)
        cos = torch.randn(shape.seq, d, dtype=dtype)
        sin = torch.randn(shape.seq, d, dtype=dtype)
        inputs: tuple[torch.Tensor, ...] = (x, cos, sin)
        if shape.past:
            kv = (1, shape.kv_heads, shape.past, d)
            inputs += (torch.randn(kv, dtype=dtype), torch.randn(kv, dtype=dtype))
    return model, inputs


LLAMA2_7B_PREFILL = LayerShape(seq=4096)
LLAMA2_7B_DECODE = LayerShape(seq=1, past=4096)
LLAMA31_8B_DECODE = LayerShape(hidden=4096, heads=32, kv_heads=8, mlp=14336, seq=1, past=8192)


class LlamaModel(nn.Module):
    """Embedding, `layers` decoder layers, final RMSNorm, LM head: one decode or prefill step.

    forward(ids [1, seq], cos, sin, *past) with past = (k_0, v_0, k_1, v_1, ...) when
    shape.past > 0 -> logits [1, seq, vocab].
    """

    def __init__(self, s: LayerShape, layers: int, vocab: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, s.hidden)
        self.layers = nn.ModuleList(LlamaLayer(s) for _ in range(layers))
        self.norm = RMSNorm(s.hidden, s.eps)
        self.lm_head = nn.Linear(s.hidden, vocab, bias=False)

    def forward(self, ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, *past[2 * i : 2 * i + 2])
        return self.lm_head(self.norm(x))


def llama_model(
    shape: LayerShape, layers: int, vocab: int, dtype: torch.dtype = torch.bfloat16, device: str = "meta"
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A whole Llama-style model and its example inputs (KV caches when shape.past > 0)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaModel(shape, layers, vocab).to(dtype).eval()
        d = shape.hidden // shape.heads
        ids = torch.zeros(1, shape.seq, dtype=torch.int64)
        inputs: tuple[torch.Tensor, ...] = (ids, torch.randn(shape.seq, d, dtype=dtype), torch.randn(shape.seq, d, dtype=dtype))
        if shape.past:
            kv = (1, shape.kv_heads, shape.past, d)
            for _ in range(layers):
                inputs += (torch.randn(kv, dtype=dtype), torch.randn(kv, dtype=dtype))
    return model, inputs


#: Llama 3.1 8B: 32 layers, vocab 128256, GQA with 8 KV heads, MLP 14336; decode at 8K context.
LLAMA31_8B = {"shape": LLAMA31_8B_DECODE, "layers": 32, "vocab": 128256}


class Gpt2Layer(nn.Module):
    """A GPT-2 block (pre-LayerNorm, fused qkv with bias, tanh GELU MLP 4x, residuals),
    with a KV cache when shape.past > 0. forward(x [1, seq, hidden], *past) -> same shape."""

    def __init__(self, s: LayerShape):
        super().__init__()
        self.s = s
        self.ln_1 = nn.LayerNorm(s.hidden)
        self.c_attn = nn.Linear(s.hidden, 3 * s.hidden)
        self.c_proj = nn.Linear(s.hidden, s.hidden)
        self.ln_2 = nn.LayerNorm(s.hidden)
        self.c_fc = nn.Linear(s.hidden, s.mlp)
        self.mlp_proj = nn.Linear(s.mlp, s.hidden)

    def forward(self, x: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        s = self.s
        b, n, _ = x.shape
        d = s.hidden // s.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(s.hidden, dim=2)
        q, k, v = (t.view(b, n, s.heads, d).transpose(1, 2) for t in (q, k, v))
        if past:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        scores = (q @ k.transpose(2, 3)) * (1.0 / math.sqrt(d))
        if n > 1:
            total = k.shape[2]
            row = torch.arange(n, device=x.device).unsqueeze(1) + (total - n)
            col = torch.arange(total, device=x.device).unsqueeze(0)
            scores = scores + (col > row).to(scores.dtype) * torch.finfo(scores.dtype).min
        o = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, n, s.hidden)
        x = x + self.c_proj(o)
        h = self.c_fc(self.ln_2(x))
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h * h * h)))
        return x + self.mlp_proj(h)


class Gpt2Model(nn.Module):
    """Token + position embeddings, layers, final LayerNorm, tied LM head."""

    def __init__(self, s: LayerShape, layers: int, vocab: int, positions: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, s.hidden)
        self.wpe = nn.Embedding(positions, s.hidden)
        self.layers = nn.ModuleList(Gpt2Layer(s) for _ in range(layers))
        self.ln_f = nn.LayerNorm(s.hidden)

    def forward(self, ids: torch.Tensor, pos: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(pos)
        for i, layer in enumerate(self.layers):
            x = layer(x, *past[2 * i : 2 * i + 2])
        return self.ln_f(x) @ self.wte.weight.t()


def gpt2_model(
    shape: LayerShape, layers: int = 12, vocab: int = 50257, dtype: torch.dtype = torch.float32, device: str = "meta"
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """GPT-2 (small by default: 12 layers, hidden 768, 12 heads) for one step with a KV cache."""
    torch.manual_seed(0)
    with torch.device(device):
        model = Gpt2Model(shape, layers, vocab, 1024).to(dtype).eval()
        ids = torch.zeros(1, shape.seq, dtype=torch.int64)
        pos = torch.arange(shape.past, shape.past + shape.seq).unsqueeze(0)
        inputs: tuple[torch.Tensor, ...] = (ids, pos)
        if shape.past:
            kv = (1, shape.heads, shape.past, shape.hidden // shape.heads)
            for _ in range(layers):
                inputs += (torch.randn(kv, dtype=dtype), torch.randn(kv, dtype=dtype))
    return model, inputs


#: GPT-2 small decoding one token after a 128-token prompt, fp32 (as the example model).
GPT2_SMALL_DECODE = LayerShape(hidden=768, heads=12, kv_heads=12, mlp=3072, seq=1, past=128)


def hf_llama31_8b_decode(context: int = 8192, layers: int = 32) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """HF's `LlamaForCausalLM` with the Llama-3.1-8B config (hidden 4096, 32 heads, 8 KV
    heads, MLP 14336, vocab 128256, RoPE theta 5e5), BF16, on the meta device, decoding one
    token (batch 1) after `context` cached tokens: forward(ids [1, 1] int64, pos [1, 1]
    int64, k0, v0, k1, v1, ... each [1, 8, context, 128] bf16) -> logits [1, 1, 128256].
    `layers` < 32 builds the same model shallower (tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.cache_utils import DynamicCache

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                      rope_theta=500000.0)  # type: ignore[call-arg]  # a LlamaConfig kwarg its stubs miss

    class Decode(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, ids: torch.Tensor, pos: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
            cache = DynamicCache(config=cfg)
            for i in range(len(kv) // 2):
                cache.update(kv[2 * i], kv[2 * i + 1], i)
            return self.m(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True).logits

    with torch.device("meta"):
        model = Decode(LlamaForCausalLM(cfg).to(torch.bfloat16).eval())  # type: ignore[arg-type]
        inputs = (torch.zeros(1, 1, dtype=torch.int64), torch.full((1, 1), context, dtype=torch.int64),
                  *(torch.zeros(1, 8, context, 128, dtype=torch.bfloat16) for _ in range(2 * layers)))
    return model, inputs
