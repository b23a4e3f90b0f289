#!/usr/bin/env python3
"""gpt_tiny_ref.py — float64 numpy reference for a whole tiny GPT-2 model and
three AdamW steps, for tests/test_gpt.c (CI does not run python).

Model: learned token and position embeddings, L pre-LN blocks (LayerNorm,
fused qkv with biases, causal softmax attention, projection, residual,
LayerNorm, fc, GELU-tanh, projection, residual), final LayerNorm, LM head tied
to the token embedding, mean cross-entropy. Tensor names and (out, in) weight
layout follow common/model.h. Gradients by hand-written backprop, checked here
against central finite differences before anything is written.

Then three AdamW steps on the same batch (lr 1e-2, betas 0.9 / 0.95, eps 1e-8,
bias correction, decoupled weight decay 0.1 on 2-D tensors only, no clipping):
the loss before each step and every parameter after the third.

Writes tests/ref/gpt_tiny_ref.txt: one tensor a line, "name count v1 v2 ...",
17 significant digits.

Usage: python3 tests/ref/gpt_tiny_ref.py [OUT]
"""
import os
import sys
import numpy as np

# LayerNorm (eps 1e-5), GELU-tanh and the finite-difference check, shared with the block reference
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_block_ref import check_fd, gelu, gelu_grad, ln_bwd, ln_fwd  # noqa: E402

B, T, C, H, V, L = 2, 5, 8, 2, 11, 2
F = 4 * C
HD = C // H
EPS = 1e-5  # as gpt_block_ref's
LR, B1, B2, AEPS, WD = 1e-2, 0.9, 0.95, 1e-8, 0.1

rng = np.random.default_rng(20241124)


def init():
    P = {"wte.weight": 0.3 * rng.standard_normal((V, C)), "wpe.weight": 0.1 * rng.standard_normal((T, C))}
    for l in range(L):
        p = f"h.{l}."
        P[p + "ln_1.weight"] = 1 + 0.1 * rng.standard_normal(C)
        P[p + "ln_1.bias"] = 0.1 * rng.standard_normal(C)
        P[p + "attn.qkv.weight"] = 0.3 * rng.standard_normal((3 * C, C))
        P[p + "attn.qkv.bias"] = 0.1 * rng.standard_normal(3 * C)
        P[p + "attn.proj.weight"] = 0.3 * rng.standard_normal((C, C))
        P[p + "attn.proj.bias"] = 0.1 * rng.standard_normal(C)
        P[p + "ln_2.weight"] = 1 + 0.1 * rng.standard_normal(C)
        P[p + "ln_2.bias"] = 0.1 * rng.standard_normal(C)
        P[p + "mlp.fc.weight"] = 0.3 * rng.standard_normal((F, C))
        P[p + "mlp.fc.bias"] = 0.1 * rng.standard_normal(F)
        P[p + "mlp.proj.weight"] = 0.2 * rng.standard_normal((C, F))
        P[p + "mlp.proj.bias"] = 0.1 * rng.standard_normal(C)
    P["ln_f.weight"] = 1 + 0.1 * rng.standard_normal(C)
    P["ln_f.bias"] = 0.1 * rng.standard_normal(C)
    return P


P0 = init()
windows = rng.integers(0, V, size=(B, T + 1))
tokens = windows[:, :T].reshape(-1)
targets = windows[:, 1:].reshape(-1)
N = B * T


def heads(t):
    return t.reshape(B, T, H, HD).transpose(0, 2, 1, 3)


def unheads(t):
    return t.transpose(0, 2, 1, 3).reshape(N, C)


def forward(P, keep=False):
    caches = []
    x = P["wte.weight"][tokens] + np.tile(P["wpe.weight"], (B, 1))
    mask = np.tril(np.ones((T, T))) > 0
    for l in range(L):
        p = f"h.{l}."
        c = {"x": x}
        h1, c["ln1"] = ln_fwd(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        qkv = h1 @ P[p + "attn.qkv.weight"].T + P[p + "attn.qkv.bias"]
        q, k, v = heads(qkv[:, :C]), heads(qkv[:, C:2 * C]), heads(qkv[:, 2 * C:])
        s = np.where(mask, q @ k.transpose(0, 1, 3, 2) / np.sqrt(HD), -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        y = unheads(a @ v)
        x1 = x + y @ P[p + "attn.proj.weight"].T + P[p + "attn.proj.bias"]
        h2, c["ln2"] = ln_fwd(x1, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        f = h2 @ P[p + "mlp.fc.weight"].T + P[p + "mlp.fc.bias"]
        g = gelu(f)
        x = x1 + g @ P[p + "mlp.proj.weight"].T + P[p + "mlp.proj.bias"]
        c.update(h1=h1, q=q, k=k, v=v, a=a, y=y, x1=x1, h2=h2, f=f, g=g)
        caches.append(c)
    hf, lnf = ln_fwd(x, P["ln_f.weight"], P["ln_f.bias"])
    logits = hf @ P["wte.weight"].T
    m = logits.max(-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(-1))
    loss = (lse - logits[np.arange(N), targets]).mean()
    if not keep:
        return loss
    return loss, dict(blocks=caches, hf=hf, lnf=lnf, logits=logits, lse=lse)


def backward(P, c):
    G = {k: np.zeros_like(v) for k, v in P.items()}
    probs = np.exp(c["logits"] - c["lse"][:, None])
    dlogits = probs.copy()
    dlogits[np.arange(N), targets] -= 1
    dlogits /= N
    G["wte.weight"] += dlogits.T @ c["hf"]
    dx, G["ln_f.weight"], G["ln_f.bias"] = ln_bwd(dlogits @ P["wte.weight"], P["ln_f.weight"], c["lnf"])
    for l in reversed(range(L)):
        p = f"h.{l}."
        b = c["blocks"][l]
        G[p + "mlp.proj.weight"] = dx.T @ b["g"]
        G[p + "mlp.proj.bias"] = dx.sum(0)
        df = (dx @ P[p + "mlp.proj.weight"]) * gelu_grad(b["f"])
        G[p + "mlp.fc.weight"] = df.T @ b["h2"]
        G[p + "mlp.fc.bias"] = df.sum(0)
        dln2, G[p + "ln_2.weight"], G[p + "ln_2.bias"] = ln_bwd(df @ P[p + "mlp.fc.weight"], P[p + "ln_2.weight"], b["ln2"])
        dx1 = dx + dln2
        G[p + "attn.proj.weight"] = dx1.T @ b["y"]
        G[p + "attn.proj.bias"] = dx1.sum(0)
        dy = heads(dx1 @ P[p + "attn.proj.weight"])
        a, q, k, v = b["a"], b["q"], b["k"], b["v"]
        da = dy @ v.transpose(0, 1, 3, 2)
        dv = a.transpose(0, 1, 3, 2) @ dy
        ds = a * (da - (a * da).sum(-1, keepdims=True)) / np.sqrt(HD)
        dqkv = np.concatenate([unheads(ds @ k), unheads(ds.transpose(0, 1, 3, 2) @ q), unheads(dv)], axis=1)
        G[p + "attn.qkv.weight"] = dqkv.T @ b["h1"]
        G[p + "attn.qkv.bias"] = dqkv.sum(0)
        dln1, G[p + "ln_1.weight"], G[p + "ln_1.bias"] = ln_bwd(dqkv @ P[p + "attn.qkv.weight"], P[p + "ln_1.weight"], b["ln1"])
        dx = dx1 + dln1
    np.add.at(G["wte.weight"], tokens, dx)
    G["wpe.weight"] = dx.reshape(B, T, C).sum(0)
    return G


def adamw(P, steps):
    M = {k: np.zeros_like(v) for k, v in P.items()}
    S = {k: np.zeros_like(v) for k, v in P.items()}
    losses = []
    for t in range(1, steps + 1):
        loss, c = forward(P, keep=True)
        losses.append(loss)
        G = backward(P, c)
        for k in P:
            M[k] = B1 * M[k] + (1 - B1) * G[k]
            S[k] = B2 * S[k] + (1 - B2) * G[k] ** 2
            mh, vh = M[k] / (1 - B1**t), S[k] / (1 - B2**t)
            wd = WD if P[k].ndim == 2 else 0.0
            P[k] = P[k] - LR * (mh / (np.sqrt(vh) + AEPS) + wd * P[k])
    return losses


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/gpt_tiny_ref.txt"
    P = {k: v.copy() for k, v in P0.items()}
    loss, c = forward(P, keep=True)
    G = backward(P, c)
    check_fd(P, G, forward, 1e-6)
    P3 = {k: v.copy() for k, v in P0.items()}
    losses = adamw(P3, 3)
    with open(out, "w") as fh:
        fh.write("# tiny GPT-2 reference (tests/ref/gpt_tiny_ref.py), float64\n")
        fh.write(f"# B={B} T={T} C={C} H={H} V={V} L={L} F={F} eps={EPS}; AdamW lr={LR} betas={B1},{B2} eps={AEPS} wd={WD}\n")

        def put(name, a):
            a = np.asarray(a, dtype=np.float64).reshape(-1)
            fh.write(f"{name} {a.size} " + " ".join(f"{x:.17g}" for x in a) + "\n")

        put("dims", [B, T, C, H, V, L, F])
        put("tokens", tokens)
        put("targets", targets)
        for name, w in P0.items():
            put(name, w)
        put("logits", c["logits"])
        put("loss", [loss])
        for name in P0:
            put("grad:" + name, G[name])
        put("adamw:losses", losses)
        for name in P0:
            put("adamw:" + name, P3[name])
    print(f"wrote {out}: loss {loss:.12f}, losses over 3 AdamW steps {losses}")


if __name__ == "__main__":
    main()
