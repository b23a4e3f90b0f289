#!/usr/bin/env bash
# bench/torch_gpt.py's peak lookup: the dense bf16 peak each device name
# (as nvidia-smi and torch.cuda.get_device_name print it) gets, against
# NVIDIA's datasheets: H100 SXM and H200 SXM 989.4 TFLOP/s, H100 NVL and
# H200 NVL 835.5, H100 PCIe 756; an unknown GPU gets none. No torch needed
# (--count). Skipped (77) without python3.
set -u
root=${1:?usage: bench_peaks.sh SOURCE_DIR}
command -v python3 >/dev/null || { echo "no python3: skipped"; exit 77; }
fail=0
check() { # device name, expected peak in TFLOP/s ("None": none)
  got=$(python3 "$root/bench/torch_gpt.py" --model gpt2-124m --count --device-name "$1" |
        python3 -c 'import json,sys; p=json.load(sys.stdin)["peak_flops"]; print("None" if p is None else "%.1f" % (p / 1e12))')
  if [ "$got" = "$2" ]; then echo "ok: $1: $got TFLOP/s"; else echo "FAIL: $1: $got TFLOP/s, datasheet $2"; fail=1; fi
}
check "NVIDIA H200" 989.4
check "NVIDIA H200 NVL" 835.5
check "NVIDIA H100 80GB HBM3" 989.4
check "NVIDIA H100 NVL" 835.5
check "NVIDIA H100 PCIe" 756.0
check "NVIDIA A100-SXM4-80GB" None
exit $fail
