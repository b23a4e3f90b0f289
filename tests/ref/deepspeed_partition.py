#!/usr/bin/env python3
"""Reference boundaries for Parallax's partition tests, from DeepSpeed's own
algorithms.

Transcribed (not imported: DeepSpeed needs torch) from
  microsoft/DeepSpeed deepspeed/runtime/utils.py at commit 38327e07f6cd
  (v0.16.5, 2025-02-21):
    partition_uniform   - unchanged since #4053 (v0.10.1, Aug 2023)
    partition_balanced  - the linear-partition dynamic program of #4312
                          (v0.12.5, Dec 2023); the current algorithm for every
                          DeepSpeed >= 0.13.
  and, for documentation only, the previous binary-search version
  (partition_balanced / _rb_partition_balanced / _lprobe at 2bdf061f4^), which
  Parallax does not implement: its boundaries are printed as comments.

The transcription keeps DeepSpeed's arithmetic on purpose: numpy float64
prefix sums, inf-initialised tables, `>=` tie-breaking (the LAST k of equal
cost wins), dp_min[0, 0] left at inf.

Used ONLY to generate tests/ref/partition_cases.txt, which
tests/test_partition.c reads:
    python3 tests/ref/deepspeed_partition.py > tests/ref/partition_cases.txt

Line format (whitespace separated):
    uniform  NAME NUM_PARTS NUM_ITEMS     B0,B1,...,BNUM_PARTS
    balanced NAME NUM_PARTS W0,W1,...     B0,B1,...,BNUM_PARTS
Weights are printed with repr(), which round-trips through strtod.
"""
from bisect import bisect_left
import random

import numpy as np


# --- deepspeed/runtime/utils.py (v0.16.5) ------------------------------------

def partition_uniform(num_items, num_parts):
    parts = [0] * (num_parts + 1)
    if num_items <= num_parts:
        for p in range(num_parts + 1):
            parts[p] = min(p, num_items)
        return parts

    chunksize = num_items // num_parts
    residual = num_items - (chunksize * num_parts)

    parts = np.arange(0, (num_parts + 1) * chunksize, chunksize)

    for i in range(residual):
        parts[i + 1:] += 1
    return parts.tolist()


def partition_balanced(weights, num_parts):
    n = len(weights)
    m = num_parts

    if n <= m:
        return partition_uniform(n, m)

    dp_max = np.full((n + 1, m + 1), np.inf)
    dp_min = np.full((n + 1, m + 1), np.inf)
    dp_cost = np.full((n + 1, m + 1), np.inf)
    position = np.zeros((n + 1, m + 1), dtype=int)
    prefix_sum = np.zeros((n + 1))
    prefix_sum[1:] = np.cumsum(weights)

    dp_max[0, 0] = 0
    dp_cost[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, min(i, m) + 1):
            for k in range(i):
                max_sum = max(dp_max[k, j - 1], prefix_sum[i] - prefix_sum[k])
                min_sum = min(dp_min[k, j - 1], prefix_sum[i] - prefix_sum[k])
                cost = max_sum - min_sum
                if dp_cost[i, j] >= cost:
                    dp_cost[i, j] = cost
                    dp_max[i, j] = max_sum
                    dp_min[i, j] = min_sum
                    position[i, j] = k

    parts = [n]
    for i in reversed(range(1, m + 1)):
        parts.append(int(position[parts[-1], i]))
    parts.reverse()
    return parts


# --- the binary-search version, DeepSpeed <= 0.12.4 (documentation only) -----

def _prefix_sum_inc(weights):
    w = [x for x in weights]
    for x in range(1, len(w)):
        w[x] += w[x - 1]
    return w


def _lprobe(weights, num_parts, bottleneck):
    num_items = len(weights)
    total_weight = weights[-1]
    parts = [0] * (num_parts + 1)
    for p in range(1, num_parts + 1):
        parts[p] = num_items
    bsum = bottleneck
    chunksize = num_items // num_parts
    step = chunksize
    for p in range(1, num_parts):
        while (step < num_items) and (weights[step] < bsum):
            step += chunksize
        parts[p] = bisect_left(weights, bsum, lo=step - chunksize, hi=min(step, num_items))
        if parts[p] == num_items:
            part_size = weights[-1] - weights[parts[p - 1]]
            return parts, part_size < bottleneck
        bsum = weights[parts[p] - 1] + bottleneck
    return parts, bsum >= total_weight


def _rb_partition_balanced(weights, num_parts, eps):
    total_weight = weights[-1]
    lower = total_weight / num_parts
    upper = total_weight
    while upper > lower + eps:
        mid = lower + ((upper - lower) / 2)
        parts, success = _lprobe(weights, num_parts, mid)
        if success:
            upper = mid
        else:
            lower = mid + eps
    return upper


def legacy_partition_balanced(weights, num_parts, eps=1e-3):
    num_items = len(weights)
    if num_items <= num_parts:
        return partition_uniform(num_items, num_parts)
    weights_ = _prefix_sum_inc(weights)
    bottleneck = _rb_partition_balanced(weights_, num_parts, eps=eps)
    parts, success = _lprobe(weights_, num_parts, bottleneck)
    assert success
    return parts


# --- cases -------------------------------------------------------------------

def _csv(xs):
    return ",".join(repr(x) for x in xs)


def _gpt_like(blocks, embed, block, norm, head):
    """Per-layer parameter counts of an embedding, N blocks, norm, tied head."""
    return [embed] + [block] * blocks + [norm, head]


def main():
    rng = random.Random(20240607)

    uniform_cases = [
        ("u_10_4", 10, 4),      # residual 2 goes to the first parts
        ("u_8_3", 8, 3),
        ("u_12_4", 12, 4),      # exact
        ("u_3_5", 3, 5),        # fewer items than parts: trailing parts empty
        ("u_5_5", 5, 5),
        ("u_99_8", 99, 8),
        ("u_36_16", 36, 16),    # gpt2-xl-ish layer list (48+3) is elsewhere
        ("u_0_2", 0, 2),
    ]

    balanced_cases = [
        ("ds_example", [3, 1, 4, 1, 5, 9, 2, 6], 3),
        ("ds_test_121_4", [1, 2, 1], 4),            # n <= m -> uniform
        ("ds_test_1111_4", [1, 1, 1, 1], 4),
        ("ds_test_11111_4", [1, 1, 1, 1, 1], 4),    # legacy left the last part empty
        ("ds_test_111101_4", [1, 1, 1, 1, 0, 1], 4),
        ("equal_12_4", [7] * 12, 4),
        ("equal_10_4", [1] * 10, 4),
        ("equal_7_3", [2] * 7, 3),
        ("one_huge", [1, 1, 1, 1000, 1, 1, 1, 1], 3),
        ("huge_first", [1000, 1, 1, 1, 1, 1], 3),
        ("zeros_mixed", [0, 0, 5, 0, 0, 5, 0, 0], 2),
        ("all_zero", [0] * 6, 3),
        ("two_parts", [5, 1, 1, 1, 1, 1], 2),
        ("single_part", [4, 2, 9], 1),
        ("fractions", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 3),
        # DeepSpeed binary "type:transformer" weights for embed + 6 blocks + norm + head
        ("type_binary", [0, 1, 1, 1, 1, 1, 1, 0, 0], 4),
        # "parameters" for a GPT-2-124M-shaped list: wte+wpe, 12 blocks, ln_f, tied head (V*h)
        ("tie_121_2", [1, 2, 1], 2),                # hand-worked in common/partition.c
        # the tiny GPT of tests/test_partition.c (L=4, h=8, V=16, S=8, tied):
        # stored params embed 192, block 872, ln_f 16, tied head 128
        ("tiny_gpt_params_2", [192, 872, 872, 872, 872, 16, 128], 2),
        ("tiny_gpt_params_4", [192, 872, 872, 872, 872, 16, 128], 4),
        ("tiny_gpt_type_transformer_2", [0, 1, 1, 1, 1, 0, 0], 2),
        ("tiny_gpt_type_transformer_3", [0, 1, 1, 1, 1, 0, 0], 3),
        ("tiny_gpt_type_norm_2", [0, 0, 0, 0, 0, 1, 0], 2),
        ("gpt2_params_4", _gpt_like(12, 38597376 + 786432, 7087872, 1536, 38597376), 4),
    ]
    for t in range(6):
        n = rng.randint(4, 14)
        m = rng.randint(2, min(n, 6))
        w = [rng.randint(0, 20) for _ in range(n)]
        balanced_cases.append((f"random_{t}", w, m))

    print("# Generated by tests/ref/deepspeed_partition.py (DeepSpeed v0.16.5 "
          "partition_uniform / partition_balanced) -- do not edit by hand.")
    print("# uniform  NAME NUM_PARTS NUM_ITEMS BOUNDS")
    print("# balanced NAME NUM_PARTS WEIGHTS   BOUNDS")
    for name, n, m in uniform_cases:
        print(f"uniform {name} {m} {n} {_csv(partition_uniform(n, m))}")
    for name, w, m in balanced_cases:
        parts = partition_balanced(w, m)
        legacy = legacy_partition_balanced(w, m)
        if legacy != parts:
            print(f"# {name}: DeepSpeed <= 0.12.4 (_lprobe) gave {legacy}")
        print(f"balanced {name} {m} {_csv(w)} {_csv(parts)}")


if __name__ == "__main__":
    main()
