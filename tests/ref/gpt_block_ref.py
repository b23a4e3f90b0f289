#!/usr/bin/env python3
"""gpt_block_ref.py — float64 numpy reference for one GPT-2 block.

Computes embedding (token + learned position) -> one pre-LN GPT-2 block
(LayerNorm, fused qkv, causal softmax attention, projection, residual,
LayerNorm, fc, GELU-tanh, projection, residual) -> final LayerNorm -> tied LM
head -> mean cross-entropy, then every gradient by hand-written backprop,
checked here against central finite differences before anything is written.

Writes tests/ref/gpt_block_ref.txt: one tensor a line, "name count v1 v2 ...",
values with 17 significant digits; weights stored (out, in) as in
common/model.h. tests/test_backend.c reads it (CI does not run python).

Usage: python3 tests/ref/gpt_block_ref.py [OUT]
"""
import sys
import numpy as np

B, T, C, H, V, F = 2, 4, 8, 2, 13, 32
HD = C // H
EPS = 1e-5
GELU_K = np.sqrt(2.0 / np.pi)

rng = np.random.default_rng(20240520)
P = {
    "wte": 0.3 * rng.standard_normal((V, C)),
    "wpe": 0.1 * rng.standard_normal((T, C)),
    "ln1w": 1 + 0.1 * rng.standard_normal(C),
    "ln1b": 0.1 * rng.standard_normal(C),
    "qkvw": 0.3 * rng.standard_normal((3 * C, C)),
    "qkvb": 0.1 * rng.standard_normal(3 * C),
    "projw": 0.3 * rng.standard_normal((C, C)),
    "projb": 0.1 * rng.standard_normal(C),
    "ln2w": 1 + 0.1 * rng.standard_normal(C),
    "ln2b": 0.1 * rng.standard_normal(C),
    "fcw": 0.3 * rng.standard_normal((F, C)),
    "fcb": 0.1 * rng.standard_normal(F),
    "fcprojw": 0.2 * rng.standard_normal((C, F)),
    "fcprojb": 0.1 * rng.standard_normal(C),
    "lnfw": 1 + 0.1 * rng.standard_normal(C),
    "lnfb": 0.1 * rng.standard_normal(C),
}
windows = rng.integers(0, V, size=(B, T + 1))
tokens = windows[:, :T].reshape(-1)
targets = windows[:, 1:].reshape(-1)


def ln_fwd(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(var + EPS)
    n = (x - mu) * rstd
    return n * w + b, (n, rstd)


def ln_bwd(dy, w, cache):
    n, rstd = cache
    dn = dy * w
    dx = (dn - dn.mean(-1, keepdims=True) - n * (dn * n).mean(-1, keepdims=True)) * rstd
    return dx, (dy * n).sum(0), dy.sum(0)


def gelu(x):
    return 0.5 * x * (1 + np.tanh(GELU_K * (x + 0.044715 * x**3)))


def gelu_grad(x):
    th = np.tanh(GELU_K * (x + 0.044715 * x**3))
    return 0.5 * (1 + th) + 0.5 * x * (1 - th**2) * GELU_K * (1 + 3 * 0.044715 * x**2)


def forward(P, keep=False):
    c = {}
    x0 = P["wte"][tokens] + np.tile(P["wpe"], (B, 1))
    h1, c["ln1"] = ln_fwd(x0, P["ln1w"], P["ln1b"])
    qkv = h1 @ P["qkvw"].T + P["qkvb"]
    q = qkv[:, :C].reshape(B, T, H, HD).transpose(0, 2, 1, 3)
    k = qkv[:, C:2 * C].reshape(B, T, H, HD).transpose(0, 2, 1, 3)
    v = qkv[:, 2 * C:].reshape(B, T, H, HD).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HD)
    s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(B * T, C)
    x1 = x0 + y @ P["projw"].T + P["projb"]
    h2, c["ln2"] = ln_fwd(x1, P["ln2w"], P["ln2b"])
    f = h2 @ P["fcw"].T + P["fcb"]
    g = gelu(f)
    x2 = x1 + g @ P["fcprojw"].T + P["fcprojb"]
    h3, c["lnf"] = ln_fwd(x2, P["lnfw"], P["lnfb"])
    logits = h3 @ P["wte"].T
    m = logits.max(-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(-1))
    loss = (lse - logits[np.arange(B * T), targets]).mean()
    if not keep:
        return loss
    c.update(x0=x0, h1=h1, qkv=qkv, q=q, k=k, v=v, p=p, y=y, x1=x1, h2=h2, f=f, g=g, x2=x2,
             h3=h3, logits=logits, lse=lse)
    return loss, c


def backward(P, c):
    G = {k: np.zeros_like(v) for k, v in P.items()}
    N = B * T
    probs = np.exp(c["logits"] - c["lse"][:, None])
    dlogits = probs.copy()
    dlogits[np.arange(N), targets] -= 1
    dlogits /= N
    G["wte"] += dlogits.T @ c["h3"]
    dh3 = dlogits @ P["wte"]
    dx2, G["lnfw"], G["lnfb"] = ln_bwd(dh3, P["lnfw"], c["lnf"])
    # MLP
    G["fcprojw"] = dx2.T @ c["g"]
    G["fcprojb"] = dx2.sum(0)
    df = (dx2 @ P["fcprojw"]) * gelu_grad(c["f"])
    G["fcw"] = df.T @ c["h2"]
    G["fcb"] = df.sum(0)
    dh2 = df @ P["fcw"]
    dln2, G["ln2w"], G["ln2b"] = ln_bwd(dh2, P["ln2w"], c["ln2"])
    dx1 = dx2 + dln2
    # attention
    G["projw"] = dx1.T @ c["y"]
    G["projb"] = dx1.sum(0)
    dy = (dx1 @ P["projw"]).reshape(B, T, H, HD).transpose(0, 2, 1, 3)
    p, q, k, v = c["p"], c["q"], c["k"], c["v"]
    dp = dy @ v.transpose(0, 1, 3, 2)
    dv = p.transpose(0, 1, 3, 2) @ dy
    ds = p * (dp - (p * dp).sum(-1, keepdims=True)) / np.sqrt(HD)
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    back = lambda t: t.transpose(0, 2, 1, 3).reshape(B * T, C)
    dqkv = np.concatenate([back(dq), back(dk), back(dv)], axis=1)
    G["qkvw"] = dqkv.T @ c["h1"]
    G["qkvb"] = dqkv.sum(0)
    dh1 = dqkv @ P["qkvw"]
    dln1, G["ln1w"], G["ln1b"] = ln_bwd(dh1, P["ln1w"], c["ln1"])
    dx0 = dx1 + dln1
    np.add.at(G["wte"], tokens, dx0)
    G["wpe"] = dx0.reshape(B, T, C).sum(0)
    return G


def check_fd(P, G, forward, tol, h=1e-6):
    """Central finite differences of forward(P) against the gradients G, per tensor."""
    for name, w in P.items():
        fd = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + h
            lp = forward(P)
            w[i] = old - h
            lm = forward(P)
            w[i] = old
            fd[i] = (lp - lm) / (2 * h)
        err = np.linalg.norm(fd - G[name]) / np.linalg.norm(fd)
        assert err < tol, f"{name}: finite differences disagree, rel err {err:.3e}"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/gpt_block_ref.txt"
    loss, c = forward(P, keep=True)
    G = backward(P, c)
    check_fd(P, G, forward, 1e-7)
    with open(out, "w") as fh:
        fh.write(f"# GPT-2 block reference (tests/ref/gpt_block_ref.py), float64\n")
        fh.write(f"# B={B} T={T} C={C} H={H} V={V} F={F} eps={EPS}\n")
        fh.write(f"dims 6 {B} {T} {C} {H} {V} {F}\n")

        def put(name, a):
            a = np.asarray(a, dtype=np.float64).reshape(-1)
            fh.write(f"{name} {a.size} " + " ".join(f"{x:.17g}" for x in a) + "\n")

        put("tokens", tokens)
        put("targets", targets)
        for name, w in P.items():
            put(name, w)
        put("logits", c["logits"])
        put("loss", [loss])
        for name in P:
            put("d" + name, G[name])
    print(f"wrote {out}: loss {loss:.12f}")


if __name__ == "__main__":
    main()
