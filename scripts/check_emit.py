"""Validate files written by `parallax-sim plan --emit` with the frameworks'
own parsers (run by scripts/check-emit.sh inside a throwaway venv).

    python check_emit.py DIR DP TP PP

DIR holds deepspeed/ds_config.json, torchtitan/torchtitan.toml and
megatron/pretrain_gpt.sh of one plan. Prints one line per check and what the
parser made of the file; exits 1 when a parser refuses a file. Megatron-LM's
argument parser is not in any PyPI package (megatron-core ships megatron/core
only): it is used when MEGATRON_LM names a Megatron-LM checkout; megatron-core's
own PipelineParallelLayerLayout parses the layout flag when it is installed."""
import os
import shlex
import sys
import traceback

results = []


def report(name, ok, detail):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def megatron_flags(path):
    """The PARALLAX_ARGS flags; the script's exports go into os.environ."""
    text = open(path).read()
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            os.environ[k] = v
    body = text.split("PARALLAX_ARGS=(\n", 1)[1].split("\n)\n", 1)[0]
    return shlex.split(body)


def check_deepspeed(path, dp, tp, pp):
    import deepspeed.runtime.config as dsc
    from deepspeed.runtime.config import DeepSpeedConfig
    # with no process group DeepSpeedConfig falls back to a world of 1 before
    # it asks the mpu: rank 0 of the plan's data-parallel world instead
    dsc.dist.get_rank = lambda *a, **k: 0

    class MPU:  # the data-parallel world DeepSpeed divides the batch by
        def get_data_parallel_world_size(self): return dp
        def get_data_parallel_rank(self): return 0
        def get_model_parallel_world_size(self): return tp * pp
        def get_model_parallel_rank(self): return 0
        def get_sequence_parallel_world_size(self): return 1
        def get_sequence_data_parallel_world_size(self): return dp
        def get_sequence_parallel_rank(self): return 0

    c = DeepSpeedConfig(path, mpu=MPU())
    z = c.zero_config
    detail = (f"train_batch_size={c.train_batch_size} micro={c.train_micro_batch_size_per_gpu} "
              f"gas={c.gradient_accumulation_steps} zero.stage={int(z.stage)} "
              f"offload_optimizer={z.offload_optimizer.device if z.offload_optimizer else None} "
              f"offload_param={z.offload_param.device if z.offload_param else None} "
              f"overlap_comm={z.overlap_comm} reduce_bucket_size={z.reduce_bucket_size} "
              f"bf16={c.bfloat16_config.enabled if hasattr(c, 'bfloat16_config') else c.bfloat16_enabled} "
              f"fp16={getattr(getattr(c, 'float16_config', None), 'enabled', getattr(c, 'fp16_enabled', None))} "
              f"pipeline={c.pipeline} activation_checkpointing={c.activation_checkpointing_config.repr() if hasattr(c.activation_checkpointing_config, 'repr') else vars(c.activation_checkpointing_config)} "
              f"tensor_parallel.autotp_size={getattr(c.tensor_parallel_config, 'autotp_size', None)}")
    report("deepspeed DeepSpeedConfig", True, detail)


def check_torchtitan(path):
    from torchtitan.config import ConfigManager
    cfg = ConfigManager().parse_args(["--job.config_file", path])
    p, t, a = cfg.parallelism, cfg.training, cfg.activation_checkpoint
    detail = (f"dp_replicate={p.data_parallel_replicate_degree} dp_shard={p.data_parallel_shard_degree} "
              f"reshard={p.fsdp_reshard_after_forward} tp={p.tensor_parallel_degree} pp={p.pipeline_parallel_degree} "
              f"schedule={p.pipeline_parallel_schedule} pp_mbs={p.pipeline_parallel_microbatch_size} "
              f"layers_per_stage={p.pipeline_parallel_layers_per_stage} cp={p.context_parallel_degree} "
              f"local_batch={t.local_batch_size} global_batch={t.global_batch_size} seq_len={t.seq_len} "
              f"param_dtype={t.mixed_precision_param} ac.mode={a.mode} ac.selective={a.selective_ac_option}")
    report("torchtitan ConfigManager (0.2.x TOML)", True, detail)


def check_megatron_layout(flags, pp, num_layers):
    if "--pipeline-model-parallel-layout" not in flags:
        return
    layout = flags[flags.index("--pipeline-model-parallel-layout") + 1]
    from megatron.core.transformer.pipeline_parallel_layer_layout import PipelineParallelLayerLayout
    lay = PipelineParallelLayerLayout(layout, pp)
    lay.validate_layer_layout(num_layers, 0)
    report("megatron-core PipelineParallelLayerLayout", True, f"{layout} -> {lay.pretty_repr()!r}")


def check_megatron_args(flags, dp, tp, pp):
    root = os.environ.get("MEGATRON_LM")
    if not root:
        print("SKIP megatron arguments.py: set MEGATRON_LM to a Megatron-LM checkout (its parser is not on PyPI)")
        return
    import typing
    import typing_extensions
    if not hasattr(typing, "override"):  # Megatron-LM uses Python 3.12's typing.override
        typing.override = typing_extensions.override
    from megatron.training.arguments import parse_args, validate_args
    sys.argv = ["pretrain_gpt.py"] + flags
    args = parse_args()
    names = ["tensor_model_parallel_size", "pipeline_model_parallel_size", "pipeline_model_parallel_layout",
             "num_layers_per_virtual_pipeline_stage", "sequence_parallel", "micro_batch_size", "global_batch_size",
             "recompute_granularity", "recompute_method", "recompute_num_layers", "use_distributed_optimizer",
             "use_megatron_fsdp", "data_parallel_sharding_strategy", "overlap_grad_reduce", "overlap_param_gather",
             "ddp_bucket_size", "bf16", "fp16", "num_layers", "hidden_size", "ffn_hidden_size",
             "num_attention_heads", "group_query_attention", "num_query_groups", "seq_length",
             "max_position_embeddings", "swiglu", "normalization", "position_embedding_type",
             "untie_embeddings_and_output_weights", "add_bias_linear", "attention_dropout", "hidden_dropout"]
    detail = " ".join(f"{n}={getattr(args, n, '?')}" for n in names)
    report("megatron arguments.py parse_args", True, detail)
    args.world_size, args.rank = dp * tp * pp, 0
    import megatron.training.arguments as margs
    if hasattr(margs, "get_device_arch_version"):  # validate_args asks the GPU: answer as an H100 (sm_90)
        margs.get_device_arch_version = lambda: 9
    try:
        validate_args(args)
        report("megatron arguments.py validate_args", True,
               f"data_parallel_size={args.data_parallel_size} "
               f"virtual_pipeline_model_parallel_size={args.virtual_pipeline_model_parallel_size}")
    except Exception as e:  # reported, not hidden
        report("megatron arguments.py validate_args", False, f"{type(e).__name__}: {e}")


def main():
    d, dp, tp, pp = sys.argv[1], *map(int, sys.argv[2:5])
    flags = megatron_flags(os.path.join(d, "megatron", "pretrain_gpt.sh"))
    num_layers = int(flags[flags.index("--num-layers") + 1])
    if os.environ.get("MEGATRON_LM"):  # the checkout's megatron before any installed megatron-core
        sys.path.insert(0, os.environ["MEGATRON_LM"])
    for name, fn in [("deepspeed", lambda: check_deepspeed(os.path.join(d, "deepspeed", "ds_config.json"), dp, tp, pp)),
                     ("torchtitan", lambda: check_torchtitan(os.path.join(d, "torchtitan", "torchtitan.toml"))),
                     ("megatron args", lambda: check_megatron_args(flags, dp, tp, pp)),
                     ("megatron layout", lambda: check_megatron_layout(flags, pp, num_layers))]:
        try:
            fn()
        except Exception as e:
            traceback.print_exc(limit=-3)
            report(name, False, f"{type(e).__name__}: {e}")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
