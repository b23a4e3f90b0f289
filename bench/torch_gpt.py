#!/usr/bin/env python3
"""torch_gpt.py — the reference throughput of a small PyTorch GPT on one GPU,
for side-by-side figures with `parallax-exec run --backend cuda`
(bench/gpu_bench.sh, run by scripts/gpu-check.sh).

Models (GPT-2 architecture: learned positions, LayerNorm, tanh GELU, tied LM
head, biases):
  gpt2-124m  12 layers, hidden 768, 12 heads, vocabulary 50257, T 1024
  gpt-1.3b   24 layers, hidden 2048, 16 heads, vocabulary 50257, T 1024
             (bench/gpt-1.3b.ini gives parallax the same shape)

Each is trained (forward, cross-entropy, backward, fused AdamW, grad-norm clip
at 1.0) in bf16 autocast with fp32 master weights, on random tokens, eager and
under torch.compile; after warm-up steps the timed steps are bracketed by CUDA
events and torch.cuda.synchronize().

MFU convention (the one Parallax's guide states; PaLM, Chowdhery et al. 2022,
appendix B; nanoGPT and llm.c use the same):
  model FLOPs per token = 6 N + 12 L h s
with N every parameter of the model (embeddings included, the tied head counted
once), L layers, h hidden, s the sequence length; MFU = tokens/s x FLOPs per
token / peak. Peak: dense (no sparsity) BF16 tensor-core throughput from NVIDIA's
datasheets — "NVIDIA H100 Tensor Core GPU" datasheet: H100 SXM 989.4 TFLOP/s
(1,979 with sparsity), H100 PCIe 756, H100 NVL 835.5 TFLOP/s; "NVIDIA H200 Tensor Core GPU"
datasheet: H200 SXM 989.4 TFLOP/s (the same as configs/clusters/h200.ini), H200 NVL
835.5 TFLOP/s (1,671 with sparsity: the 600 W PCIe card). The SXM parts report a
bare name ("NVIDIA H200", "NVIDIA H100 80GB HBM3"), the others say "NVL" or "PCIe".
Other GPUs: pass --peak-tflops.

  python3 bench/torch_gpt.py --model gpt2-124m --batch 16           # eager and compile
  python3 bench/torch_gpt.py --model gpt-1.3b --batch 8 --json      # one JSON object
  python3 bench/torch_gpt.py --model gpt2-124m --batch 16 --gemm    # GEMM TFLOP/s of its shapes
  python3 bench/torch_gpt.py --model gpt2-124m --count --device-name "NVIDIA H200"  # N, FLOPs/token, peak (no torch)

Figures are printed, never asserted.
"""
import argparse
import json
import sys

MODELS = {
    "gpt2-124m": dict(layers=12, hidden=768, heads=12, vocab=50257, seq=1024),
    "gpt-1.3b": dict(layers=24, hidden=2048, heads=16, vocab=50257, seq=1024),
}

# dense BF16 peaks, FLOP/s, from the datasheets named above (first match of the device name wins:
# the NVL and PCIe cards before the bare name, which is the SXM part's)
PEAKS = [("H200 NVL", 835.5e12), ("H200", 989.4e12), ("H100 PCIe", 756e12), ("H100 NVL", 835.5e12),
         ("H100", 989.4e12)]


def n_params(m):
    """Every parameter of the GPT-2 architecture: wte (V h, tied with the head),
    wpe (T h), per layer 12 h^2 + 13 h (qkv 3h^2+3h, proj h^2+h, fc 4h^2+4h,
    fc_proj 4h^2+h, two LayerNorms 4h), final LayerNorm 2h."""
    h, L = m["hidden"], m["layers"]
    return m["vocab"] * h + m["seq"] * h + L * (12 * h * h + 13 * h) + 2 * h


def flops_per_token(m, seq):
    return 6 * n_params(m) + 12 * m["layers"] * m["hidden"] * seq


def peak_of(name, override):
    if override:
        return override * 1e12
    for key, peak in PEAKS:
        if key in name:
            return peak
    return None


def build(torch, m, seq):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            h = m["hidden"]
            self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
            self.qkv, self.proj = nn.Linear(h, 3 * h), nn.Linear(h, h)
            self.fc, self.fc_proj = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)

        def forward(self, x):
            B, T, h = x.shape
            nh = m["heads"]
            q, k, v = self.qkv(self.ln1(x)).split(h, dim=2)
            q, k, v = (t.view(B, T, nh, h // nh).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # flash / cuDNN: no T x T scores
            x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, h))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            h = m["hidden"]
            self.wte, self.wpe = nn.Embedding(m["vocab"], h), nn.Embedding(m["seq"], h)
            self.blocks = nn.ModuleList(Block() for _ in range(m["layers"]))
            self.ln_f = nn.LayerNorm(h)
            self.head = nn.Linear(h, m["vocab"], bias=False)
            self.head.weight = self.wte.weight  # tied
            for p in self.parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, 0.0, 0.02)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for b in self.blocks:
                x = b(x)
            logits = self.head(self.ln_f(x))
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))

    return GPT()


def train_rate(torch, m, batch, seq, steps, warmup, compiled):
    """Tokens/s of full training steps (mean over the timed steps) and the last loss."""
    dev = "cuda"
    torch.manual_seed(1337)
    model = build(torch, m, seq).to(dev)
    got = sum(p.numel() for p in model.parameters())
    if got != n_params(m):
        raise SystemExit(f"torch_gpt.py: the model has {got} parameters, the formula {n_params(m)}")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = model
    if compiled:
        step_fn = torch.compile(model)
    idx = torch.randint(0, m["vocab"], (batch, seq), device=dev)
    tgt = torch.randint(0, m["vocab"], (batch, seq), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        loss = step()
    end.record()
    torch.cuda.synchronize()
    sec = start.elapsed_time(end) / 1e3 / steps
    peak_mem = torch.cuda.max_memory_allocated()
    del model, opt, step_fn
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return batch * seq / sec, float(loss), peak_mem


def gemm_rates(torch, m, batch, seq, reps=20):
    """bf16 GEMM TFLOP/s of the model's forward shapes (rows = B T), through
    torch.matmul (cuBLAS / cuBLASLt), after warm-up, timed with CUDA events."""
    h, V, N = m["hidden"], m["vocab"], batch * seq
    shapes = [("qkv", N, h, 3 * h), ("proj", N, h, h), ("fc", N, h, 4 * h), ("fc_proj", N, 4 * h, h), ("head", N, h, V)]
    out = []
    for name, M, K, Nn in shapes:
        a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(K, Nn, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            a @ b
        e.record()
        torch.cuda.synchronize()
        sec = s.elapsed_time(e) / 1e3 / reps
        out.append((name, M, K, Nn, 2.0 * M * K * Nn / sec))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="gpt2-124m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3; compile happens there)")
    ap.add_argument("--modes", default="eager,compile", help="eager, compile or both (default)")
    ap.add_argument("--peak-tflops", type=float, default=0, help="dense bf16 peak of the GPU, TFLOP/s (default: from its name)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--gemm", action="store_true", help="GEMM TFLOP/s of the model's shapes instead of training")
    ap.add_argument("--count", action="store_true", help="print N and FLOPs/token and exit (no torch needed)")
    ap.add_argument("--device-name", default="", help="with --count: also the dense bf16 peak of this GPU (nvidia-smi's name)")
    a = ap.parse_args()
    m = MODELS[a.model]
    if a.batch < 1 or not 1 <= a.seq <= m["seq"]:
        raise SystemExit(f"torch_gpt.py: --batch must be >= 1 and --seq in 1..{m['seq']}")
    fpt = flops_per_token(m, a.seq)
    if a.count:
        print(json.dumps({"model": a.model, "params": n_params(m), "flops_per_token": fpt, "seq": a.seq,
                          "peak_flops": peak_of(a.device_name, a.peak_tflops) if a.device_name or a.peak_tflops else None}))
        return 0
    try:
        import torch
    except ImportError:
        raise SystemExit("torch_gpt.py: PyTorch is not installed here")
    if not torch.cuda.is_available():
        raise SystemExit("torch_gpt.py: no CUDA device")
    name = torch.cuda.get_device_name(0)
    peak = peak_of(name, a.peak_tflops)
    res = {"model": a.model, "device": name, "batch": a.batch, "seq": a.seq, "params": n_params(m),
           "flops_per_token": fpt, "peak_flops": peak, "torch": torch.__version__, "runs": []}
    if a.gemm:
        for gname, M, K, N, rate in gemm_rates(torch, m, a.batch, a.seq):
            res["runs"].append({"gemm": gname, "m": M, "k": K, "n": N, "tflops": rate / 1e12,
                                "of_peak": rate / peak if peak else None})
    else:
        for mode in a.modes.split(","):
            if mode not in ("eager", "compile"):
                raise SystemExit(f"torch_gpt.py: mode '{mode}' is not eager or compile")
            tps, loss, mem = train_rate(torch, m, a.batch, a.seq, a.steps, a.warmup, mode == "compile")
            res["runs"].append({"mode": mode, "tokens_per_s": tps, "mfu": tps * fpt / peak if peak else None,
                                "loss": loss, "peak_mem_bytes": mem})
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"# {a.model} ({n_params(m) / 1e6:.1f} M parameters), B {a.batch} T {a.seq}, bf16 autocast, {name}, "
          f"torch {torch.__version__}; peak {peak / 1e12 if peak else float('nan'):.1f} TFLOP/s dense bf16")
    print(f"# FLOPs/token 6N + 12 L h s = {fpt / 1e9:.3f} GFLOP")
    for r in res["runs"]:
        if a.gemm:
            pct = f"{100 * r['of_peak']:.1f} %" if r["of_peak"] else "n/a"
            print(f"  gemm {r['gemm']:8s} {r['m']:6d} x {r['k']:6d} x {r['n']:6d}  {r['tflops']:8.1f} TFLOP/s  {pct} of peak")
        else:
            mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a"
            print(f"  {r['mode']:8s} {r['tokens_per_s']:12.0f} tokens/s  MFU {mfu}  loss {r['loss']:.4f}  "
                  f"peak memory {r['peak_mem_bytes'] / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
