#!/usr/bin/env python3
"""rope_ref.py — float64 numpy reference for the rotary embedding op.

Implements Hugging Face transformers' Llama rotation (modeling_llama.py:
inv_freq = 1 / theta^(arange(0, d, 2) / d), emb = cat(freqs, freqs),
rotate_half(x) = cat(-x[d/2:], x[:d/2]), q' = q cos + rotate_half(q) sin) on
a qkv row layout (query heads, key heads, value heads, as exec/backend.h), with
head_dim 8 and GQA (4 query heads, 2 kv heads), two bases. head_dim 8 is where
"rotate half" and the interleaved (GPT-J) pairing differ; at head_dim 2 they
coincide. The backward is the transpose of the rotation, checked here against
the explicit matrix of the forward map before anything is written.

Writes tests/ref/rope_ref.txt: one tensor a line, "name count v1 v2 ...",
17 significant digits. tests/test_rope_ref.c reads it (CI does not run python).

Usage: python3 tests/ref/rope_ref.py [OUT]
"""
import sys
import numpy as np

B, T, H, KV, D = 2, 5, 4, 2, 8
W = (H + 2 * KV) * D


def rotate_half(x):
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return np.concatenate((-x2, x1), axis=-1)


def cos_sin(theta):
    inv_freq = 1.0 / (theta ** (np.arange(0, D, 2, dtype=np.float64) / D))
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq)  # (T, D/2)
    emb = np.concatenate((freqs, freqs), axis=-1)                # (T, D)
    return np.cos(emb), np.sin(emb)


def rope_fwd(qkv, theta):
    cos, sin = cos_sin(theta)
    x = qkv.reshape(B, T, H + 2 * KV, D).copy()
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    qk = x[:, :, : H + KV, :]
    x[:, :, : H + KV, :] = qk * c + rotate_half(qk) * s
    return x.reshape(B * T, W)


def rope_bwd(dout, theta):
    # transpose of x -> x cos + rotate_half(x) sin: rotate_half^T = -rotate_half
    cos, sin = cos_sin(theta)
    g = dout.reshape(B, T, H + 2 * KV, D).copy()
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    qk = g[:, :, : H + KV, :]
    g[:, :, : H + KV, :] = qk * c - rotate_half(qk * s)
    return g.reshape(B * T, W)


def check(theta, rng):
    # the forward is linear: its matrix from unit inputs; the backward is its transpose
    n = B * T * W
    M = np.stack([rope_fwd(e.reshape(B * T, W), theta).ravel() for e in np.eye(n)], axis=1)
    dout = rng.standard_normal((B * T, W))
    assert np.allclose(rope_bwd(dout, theta).ravel(), M.T @ dout.ravel(), atol=1e-13, rtol=0)
    # a rotation: norms of each (i, i + D/2) pair kept
    x = rng.standard_normal((B * T, W))
    y = rope_fwd(x, theta).reshape(B, T, H + 2 * KV, D)
    x = x.reshape(B, T, H + 2 * KV, D)
    pn = lambda a: a[..., : D // 2] ** 2 + a[..., D // 2:] ** 2
    assert np.allclose(pn(x), pn(y), atol=1e-13)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/rope_ref.txt"
    rng = np.random.default_rng(20240521)
    lines = []
    fmt = lambda name, a: f"{name} {a.size} " + " ".join(f"{v:.17g}" for v in a.ravel())
    for tag, theta in (("t1e4", 10000.0), ("t5e5", 500000.0)):
        check(theta, rng)
        x = rng.standard_normal((B * T, W))
        dout = rng.standard_normal((B * T, W))
        lines += [fmt(f"{tag}.in", x), fmt(f"{tag}.out", rope_fwd(x, theta)),
                  fmt(f"{tag}.dout", dout), fmt(f"{tag}.din", rope_bwd(dout, theta))]
    with open(out, "w") as f:
        f.write(f"# rope_ref.py: B={B} T={T} heads={H} kv_heads={KV} head_dim={D}; HF Llama rotate_half\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
