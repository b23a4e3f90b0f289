"""The Python API (python/parallax) against the CLI it wraps and against
hand-computed facts. PARALLAX_SIM names the built parallax-sim (the ctest sets
it) and PARALLAX_CLI_DATA its data directory; the package itself uses the
configs it installed."""
import json
import os
import subprocess

import pytest

import parallax

SIM = os.environ.get("PARALLAX_SIM")
needs_cli = pytest.mark.skipif(not SIM, reason="PARALLAX_SIM (the built parallax-sim) not set")


def cli(*args):
    env = dict(os.environ, PARALLAX_DATA_DIR=os.environ.get("PARALLAX_CLI_DATA", ""))
    p = subprocess.run([SIM, *args], capture_output=True, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def test_issue_example_fits_is_a_bool():
    r = parallax.plan(model="llama2-70b", cluster="dgx-h100", gpus=64, tp=8, pp=2)
    assert r["memory"]["fits"] in (True, False)
    assert r["plan"]["dp"] == 4  # 64 GPUs / (tp 8 · pp 2)


def test_plan_bubble_is_the_1f1b_formula():
    # dp = 64 / 16 = 4, m = gbs / (mbs · dp) = 64 / 4 = 16: (p-1)/(m+p-1) = 1/17
    r = parallax.plan(model="llama2-70b", cluster="dgx-h100", gpus=64, tp=8, pp=2, gbs=64, mbs=1)
    assert r["plan"]["micro_batches"] == 16
    assert r["bubble_fraction"] == pytest.approx(1 / 17, rel=1e-12)


def test_simulate_ideal_1f1b_step():
    # ideal costs F = 1, B = 2 per chunk: 1F1B takes (m + p - 1)(F + B) = (8 + 3) · 3 = 33
    r = parallax.simulate(model="gpt2-124m", pp=4, gbs=8, mbs=1, ideal=True)
    assert r["step_time_s"] == pytest.approx(33.0, rel=1e-12)
    assert r["tokens_per_s"] is None  # no FLOP/s for ideal costs


def test_models_and_clusters():
    ms = {m["preset"]: m for m in parallax.models()}
    # Llama-2 70B: 68,976,648,192 parameters (Hugging Face meta-llama/Llama-2-70b-hf)
    assert ms["llama2-70b"]["parameters"] == 68976648192
    assert (ms["llama2-70b"]["layers"], ms["llama2-70b"]["kv_heads"]) == (80, 8)
    cs = {c["preset"]: c for c in parallax.clusters()}
    # H100 SXM: 81,559 MiB as nvidia-smi reports it; 989.4 TFLOP/s dense BF16 (datasheet)
    assert cs["dgx-h100"]["gpu_memory_bytes"] == 81559 * 2**20
    assert cs["dgx-h100"]["peak_bf16_flops"] == pytest.approx(989.4e12)
    assert cs["dgx-h100"]["gpus_per_node"] == 8


def test_model_as_dict():
    # GPT-2 style, tied, learned positions, biases: V h + s h + L (12 h^2 + 13 h) + 2 h
    # = 256·64 + 128·64 + 2 (12·64² + 13·64) + 2·64 = 124,672
    spec = {"name": "dict-gpt", "layers": 2, "hidden": 64, "heads": 4, "vocab": 256, "max_seq": 128,
            "ffn_kind": "gelu", "norm": "layernorm", "position": "learned", "bias": True, "tied": True}
    r = parallax.plan(model=spec, gbs=4)
    assert r["model"]["parameters"] == 124672
    assert r["model"]["name"] == "dict-gpt"


def test_cluster_as_dict():
    # a 40 GB GPU: the memory report's capacity is the GPU's bytes
    spec = {"cluster": {"name": "half-h100", "nodes": 1},
            "gpu": {"name": "H100-40GB", "memory": "40GB", "peak_fp32": 67e12, "peak_tf32": 494.7e12,
                    "peak_fp16": 989.4e12, "peak_bf16": 989.4e12, "hbm_bw": 3350e9},
            "node": {"gpus": 8, "bandwidth": 450e9, "latency": 3e-6, "pcie_bw": 50e9, "host_memory": "2TB"},
            "network": {"bandwidth": 50e9, "latency": 10e-6}}
    r = parallax.plan(model="llama2-7b", cluster=spec, gpus=8, tp=8, gbs=8)
    assert r["memory"]["capacity"] == 40e9
    with pytest.raises(ValueError, match=r"^parallax: a cluster dict has sections"):
        parallax.plan(model="llama2-7b", cluster={"memory": "40GB"})


def test_errors_raise_value_error():
    with pytest.raises(ValueError, match=r"^parallax-sim plan: tp=3 does not divide 64 attention heads$"):
        parallax.plan(model="llama2-70b", tp=3)
    with pytest.raises(ValueError, match=r"^parallax-sim search: --objective 'fastest' is not time, memory or gpus$"):
        parallax.search(model="gpt2-124m", cluster="dgx-h100", gpus=8, gbs=64, objective="fastest")
    with pytest.raises(ValueError, match=r"model 'no-such-model' is neither a file nor a preset"):
        parallax.simulate(model="no-such-model", cluster="dgx-h100")
    # --help would print and exit the process: refused
    with pytest.raises(ValueError, match=r"^parallax: --help is not available here"):
        parallax.run("plan", "--help")
    with pytest.raises(ValueError, match=r"^parallax-sim: unknown command 'plot'"):
        parallax.run("plot", "--json")


@needs_cli
def test_plan_is_the_cli_json():
    args = dict(model="llama3-8b", cluster="dgx-h100", gpus=32, tp=2, pp=4, vpp=2, sp=True, ckpt="selective",
                gbs=256, mbs=1)
    rc, out, _ = cli("plan", "--model", "llama3-8b", "--cluster", "dgx-h100", "--gpus", "32", "--tp", "2", "--pp",
                     "4", "--vpp", "2", "--sp", "--ckpt", "selective", "--gbs", "256", "--mbs", "1", "--json")
    assert rc == 0
    assert parallax.plan(**args) == json.loads(out)


@needs_cli
def test_simulate_and_search_are_the_cli_json():
    rc, out, _ = cli("simulate", "--model", "gpt2-124m", "--cluster", "dgx-h100", "--gpus", "4", "--pp", "4",
                     "--gbs", "32", "--mbs", "4", "--json")
    assert rc == 0
    assert parallax.simulate(model="gpt2-124m", cluster="dgx-h100", gpus=4, pp=4, gbs=32, mbs=4) == json.loads(out)
    rc, out, _ = cli("search", "--model", "gpt2-124m", "--cluster", "dgx-h100", "--gpus", "8", "--gbs", "64",
                     "--threads", "1", "--top", "3", "--fix", "zero=1", "--json")
    assert rc == 0
    got = parallax.search(model="gpt2-124m", cluster="dgx-h100", gpus=8, gbs=64, threads=1, top=3, fix=["zero=1"])
    assert got == json.loads(out)
    assert all(c["layout"]["zero"] == 1 for c in got["top"])


@needs_cli
def test_error_sentence_is_the_cli_one():
    rc, _, err = cli("plan", "--model", "llama2-70b", "--cluster", "dgx-h100", "--gpus", "64", "--gbs", "-4")
    assert rc != 0
    with pytest.raises(ValueError) as e:
        parallax.plan(model="llama2-70b", cluster="dgx-h100", gpus=64, gbs=-4)
    assert str(e.value) == err.strip()
