"""Writes tests/ref/trace_tiny_cpu.json: a real PyTorch profiler (Kineto) Chrome
trace of one training step of a tiny GPT-2-style model on CPU — the shape of
the tiny-gpt preset (4 layers, hidden 64, 4 heads, vocabulary 256, sequence 64,
tied embeddings), batch 4, AdamW — data-parallel over one gloo rank
(DistributedDataParallel), so that the trace holds the forward, backward,
optimizer and communication events that `parallax-sim compare --trace` maps to
stages. Compare it with the plan
    parallax-sim compare --trace tests/ref/trace_tiny_cpu.json --model tiny-gpt --gbs 4 --mbs 4 ...

Run in a throwaway venv with torch (CPU is enough):
    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch
    /tmp/tv/bin/python tests/ref/make_trace.py tests/ref/trace_tiny_cpu.json
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.profiler import ProfilerActivity, profile, schedule


class Block(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(h)
        self.attn = nn.MultiheadAttention(h, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(h)
        self.mlp = nn.Sequential(nn.Linear(h, 4 * h), nn.GELU(), nn.Linear(4 * h, h))

    def forward(self, x, mask):
        y = self.ln1(x)
        x = x + self.attn(y, y, y, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab=256, h=64, heads=4, layers=4, seq=64):
        super().__init__()
        self.tok = nn.Embedding(vocab, h)
        self.pos = nn.Embedding(seq, h)
        self.blocks = nn.ModuleList(Block(h, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(h)
        self.head = nn.Linear(h, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied, as tiny-gpt
        self.register_buffer("mask", torch.triu(torch.full((seq, seq), float("-inf")), 1))

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x, self.mask)
        return self.head(self.ln(x))


def main(out):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=0, world_size=1)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = DDP(TinyGPT())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.randint(0, 256, (4, 65))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        x, y = data[:, :-1], data[:, 1:]
        logits = model(x)
        loss = loss_fn(logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # one warm-up step outside the trace, then one step recorded
    with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=1, active=1),
                 on_trace_ready=lambda p: p.export_chrome_trace(out)) as prof:
        for _ in range(2):
            step()
            prof.step()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "trace_tiny_cpu.json")
