/* test_trace_import.c — measured steps from Chrome traces: a hand-made CPU
 * trace and a hand-made GPU trace whose stage times are computed by hand from
 * their events, and the real torch.profiler trace in tests/ref
 * (tests/ref/make_trace.py). */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include "trace_import.h"

/* ProfilerStep#1's "dur" in tests/ref/trace_tiny_cpu.json */
#define STEP_US 25924.85

static PxMeasuredStep *load_text(const char *json) {
  g_autofree char *dir = g_dir_make_tmp("px-trace-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "t.json", NULL);
  g_assert_true(g_file_set_contents(path, json, -1, NULL));
  g_autoptr(GError) err = NULL;
  PxMeasuredStep *m = px_trace_load(path, &err);
  g_assert_no_error(err);
  g_unlink(path);
  g_rmdir(dir);
  return m;
}

#define X(name, cat, tid, ts, dur) \
  "{\"ph\":\"X\",\"name\":\"" name "\",\"cat\":\"" cat "\",\"pid\":1,\"tid\":" #tid ",\"ts\":" #ts ",\"dur\":" #dur "}"

/* µs:  step [0,100]; aten::randint [2,5] (unnamed, before the backward: forward);
 * DDP forward [10,40] holding aten::mm [15,25] and c10d::broadcast_ [30,35];
 * MmBackward0 [45,70] holding aten::mm [50,60]; gloo:all_reduce on thread 2
 * [60,75]; Optimizer.step [80,95]; aten::foo [96,98] (after the backward:
 * other); an op after the step [200,210] (ignored).
 * forward = 3 + (30 - 5) = 28, communication = 5 + 15 = 20, backward = 25,
 * optimizer = 15, other = 2. */
static void test_cpu_trace(void) {
  g_autoptr(PxMeasuredStep) m = load_text(
    "{\"distributedInfo\":{\"rank\":3,\"world_size\":8},\"traceEvents\":["
    X("ProfilerStep#3", "user_annotation", 1, 0, 100) ","
    X("aten::randint", "cpu_op", 1, 2, 3) ","
    X("DistributedDataParallel.forward", "user_annotation", 1, 10, 30) ","
    X("aten::mm", "cpu_op", 1, 15, 10) ","
    X("c10d::broadcast_", "cpu_op", 1, 30, 5) ","
    X("autograd::engine::evaluate_function: MmBackward0", "cpu_op", 1, 45, 25) ","
    X("aten::mm", "cpu_op", 1, 50, 10) ","
    X("gloo:all_reduce", "user_annotation", 2, 60, 15) ","
    X("Optimizer.step#AdamW.step", "user_annotation", 1, 80, 15) ","
    X("aten::foo", "cpu_op", 1, 96, 2) ","
    X("aten::later", "cpu_op", 1, 200, 10) ","
    "{\"ph\":\"i\",\"name\":\"marker\",\"pid\":1,\"tid\":1,\"ts\":5}]}");
  g_assert_cmpint(m->rank, ==, 3);
  g_assert_cmpint(m->world, ==, 8);
  g_assert_false(m->gpu);
  g_assert_cmpstr(m->step_name, ==, "ProfilerStep#3");
  g_assert_cmpfloat_with_epsilon(m->step_time, 100e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_FORWARD], 28e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_COMM], 20e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_BACKWARD], 25e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_OPTIMIZER], 15e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_OTHER], 2e-6, 1e-12);
  g_assert_cmpuint(m->other->len, ==, 1);
  g_assert_cmpstr(g_array_index(m->other, PxOtherOp, 0).name, ==, "aten::foo");
  g_assert_cmpuint(m->n_events, ==, 10);
}

/* Kernels: sgemm launched (correlation 7) from inside the forward [20,30] →
 * forward 10; NCCL all-reduce [40,60] → communication 20 even though launched
 * from the backward (correlation 8); a weight-gradient kernel launched from
 * the backward [62,70] → backward 8; Adam's multi_tensor_apply [80,84] →
 * optimizer 4; an unknown kernel with no launch [90,93] → other 3. */
static void test_gpu_trace(void) {
  g_autoptr(PxMeasuredStep) m = load_text(
    "{\"traceEvents\":["
    X("ProfilerStep#0", "user_annotation", 1, 0, 100) ","
    X("## forward ##", "user_annotation", 1, 5, 30) ","
    "{\"ph\":\"X\",\"name\":\"cudaLaunchKernel\",\"cat\":\"cuda_runtime\",\"pid\":1,\"tid\":1,\"ts\":6,\"dur\":1,\"args\":{\"correlation\":7}},"
    X("## backward ##", "user_annotation", 1, 36, 40) ","
    "{\"ph\":\"X\",\"name\":\"cudaLaunchKernel\",\"cat\":\"cuda_runtime\",\"pid\":1,\"tid\":1,\"ts\":37,\"dur\":1,\"args\":{\"correlation\":8}},"
    "{\"ph\":\"X\",\"name\":\"cudaLaunchKernel\",\"cat\":\"cuda_runtime\",\"pid\":1,\"tid\":1,\"ts\":39,\"dur\":1,\"args\":{\"correlation\":9}},"
    "{\"ph\":\"X\",\"name\":\"ampere_sgemm_128x64_tn\",\"cat\":\"kernel\",\"pid\":0,\"tid\":7,\"ts\":20,\"dur\":10,\"args\":{\"correlation\":7}},"
    "{\"ph\":\"X\",\"name\":\"ncclDevKernel_AllReduce_Sum_bf16_RING_LL\",\"cat\":\"kernel\",\"pid\":0,\"tid\":20,\"ts\":40,\"dur\":20,\"args\":{\"correlation\":8}},"
    "{\"ph\":\"X\",\"name\":\"sm90_xmma_gemm_wgrad\",\"cat\":\"kernel\",\"pid\":0,\"tid\":7,\"ts\":62,\"dur\":8,\"args\":{\"correlation\":9}},"
    "{\"ph\":\"X\",\"name\":\"multi_tensor_apply_kernel\",\"cat\":\"kernel\",\"pid\":0,\"tid\":7,\"ts\":80,\"dur\":4},"
    "{\"ph\":\"X\",\"name\":\"mystery_kernel\",\"cat\":\"kernel\",\"pid\":0,\"tid\":7,\"ts\":90,\"dur\":3}]}");
  g_assert_true(m->gpu);
  g_assert_cmpint(m->rank, ==, -1);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_FORWARD], 10e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_COMM], 20e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_BACKWARD], 8e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_OPTIMIZER], 4e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_OTHER], 3e-6, 1e-12);
  g_assert_cmpuint(m->other->len, ==, 1);
  g_assert_cmpstr(g_array_index(m->other, PxOtherOp, 0).name, ==, "mystery_kernel");
  /* segments: the NCCL kernel on the communication lane */
  gboolean comm_lane = FALSE;
  for (guint i = 0; i < m->segments->len; i++) {
    const PxStepSegment *s = &g_array_index(m->segments, PxStepSegment, i);
    if (s->stage == PX_STEP_COMM) comm_lane = s->lane == 1 && fabs(s->start - 40e-6) < 1e-12 && fabs(s->end - 60e-6) < 1e-12;
  }
  g_assert_true(comm_lane);
}

/* Nsight Systems, `nsys export --type json`: NOT a real export (no Nsight
 * Systems can be installed here to make one) but lines hand-made after the
 * schema such exports are read with: a string table, then events. NVTX ranges
 * "forward" [1000,5000] ns and "backward" [6000,12000] ns on thread 77, CUDA
 * API calls inside them (correlation 11, 12), their kernels on stream 7:
 * sgemm [2000,4000] → forward 2 µs, a wgrad GEMM [7000,10000] → backward 3 µs,
 * an NCCL all-reduce on stream 9 [8000,11000] → communication 3 µs (by name,
 * launched from the backward), an unknown kernel [13000,13500] → other 0.5 µs;
 * a memcpy is no kernel. Names as indices (numbers or numeric strings) or as
 * strings. */
static void test_nsys_export(void) {
  g_autoptr(PxMeasuredStep) m = load_text(
    "{\"data\":[\"forward\",\"backward\",\"cudaLaunchKernel\",\"ampere_sgemm_64x64_nn\",\"sm80_gemm_wgrad\"]}\n"
    "{\"TraceProcessEvent\":{\"startNs\":\"1000\",\"endNs\":\"5000\",\"name\":0,\"globalTid\":77}}\n"
    "{\"TraceProcessEvent\":{\"startNs\":\"1500\",\"endNs\":\"1600\",\"name\":2,\"globalTid\":77,\"correlationId\":11}}\n"
    "{\"TraceProcessEvent\":{\"startNs\":6000,\"endNs\":12000,\"name\":\"1\",\"globalTid\":77}}\n"
    "{\"TraceProcessEvent\":{\"startNs\":6500,\"endNs\":6600,\"name\":2,\"globalTid\":77,\"correlationId\":12}}\n"
    "{\"TraceProcessEvent\":{\"startNs\":6700,\"endNs\":6800,\"name\":2,\"globalTid\":77,\"correlationId\":13}}\n"
    "{\"CudaEvent\":{\"startNs\":\"2000\",\"endNs\":\"4000\",\"correlationId\":11,\"deviceId\":0,\"streamId\":7,"
    "\"kernel\":{\"shortName\":3}}}\n"
    "{\"CudaEvent\":{\"startNs\":\"7000\",\"endNs\":\"10000\",\"correlationId\":12,\"deviceId\":0,\"streamId\":7,"
    "\"kernel\":{\"demangledName\":4}}}\n"
    "{\"CudaEvent\":{\"startNs\":\"8000\",\"endNs\":\"11000\",\"correlationId\":13,\"deviceId\":0,\"streamId\":9,"
    "\"kernel\":{\"shortName\":\"ncclDevKernel_AllReduce_Sum_f32_RING_LL\"}}}\n"
    "{\"CudaEvent\":{\"startNs\":\"13000\",\"endNs\":\"13500\",\"deviceId\":0,\"streamId\":7,"
    "\"kernel\":{\"shortName\":\"mystery\"}}}\n"
    "{\"CudaEvent\":{\"startNs\":\"14000\",\"endNs\":\"15000\",\"deviceId\":0,\"streamId\":7,"
    "\"memcpy\":{\"copyKind\":1}}}\n");
  g_assert_true(m->nsys);
  g_assert_true(m->gpu);
  g_assert_null(m->step_name);
  g_assert_cmpfloat_with_epsilon(m->step_time, 12.5e-6, 1e-12); /* no ProfilerStep: the span 1000 .. 13500 ns */
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_FORWARD], 2e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_BACKWARD], 3e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_COMM], 3e-6, 1e-12);
  g_assert_cmpfloat_with_epsilon(m->stage_time[PX_STEP_OTHER], 0.5e-6, 1e-12);
  g_assert_cmpfloat(m->stage_time[PX_STEP_OPTIMIZER], ==, 0);
  g_assert_cmpstr(g_array_index(m->other, PxOtherOp, 0).name, ==, "mystery");
}

static void test_names(void) {
  g_assert_cmpint(px_trace_classify_name("ncclKernel_AllGather_RING_LL_Sum_int8_t"), ==, PX_STEP_COMM);
  g_assert_cmpint(px_trace_classify_name("record_param_comms"), ==, PX_STEP_COMM);
  g_assert_cmpint(px_trace_classify_name("Optimizer.zero_grad#SGD.zero_grad"), ==, PX_STEP_OPTIMIZER);
  g_assert_cmpint(px_trace_classify_name("autograd::engine::evaluate_function: torch::autograd::AccumulateGrad"),
                  ==, PX_STEP_BACKWARD);
  g_assert_cmpint(px_trace_classify_name("nn.Module: Linear_0"), ==, PX_STEP_FORWARD);
  g_assert_cmpint(px_trace_classify_name("aten::addmm"), ==, PX_N_STEP_STAGES);
}

static void test_errors(void) {
  g_autofree char *dir = g_dir_make_tmp("px-trace-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "t.json", NULL);
  g_assert_true(g_file_set_contents(path, "{\"rows\": []}", -1, NULL));
  g_autoptr(GError) err = NULL;
  g_assert_null(px_trace_load(path, &err));
  g_assert_error(err, PX_TRACE_ERROR, PX_TRACE_ERROR_FORMAT);
  g_assert_true(g_str_has_suffix(err->message, "not a Chrome trace (no traceEvents array; export PyTorch profiles "
                                               "with export_chrome_trace) nor an Nsight Systems JSON export"));
  g_clear_error(&err);
  g_assert_true(g_file_set_contents(path, "{\"traceEvents\": [", -1, NULL));
  g_assert_null(px_trace_load(path, &err));
  g_assert_error(err, PX_TRACE_ERROR, PX_TRACE_ERROR_IO);
  g_unlink(path);
  g_rmdir(dir);
}

/* The real trace: one AdamW step of tiny-gpt under DDP on one gloo rank. Its
 * ProfilerStep#1 lasts 25,924.85 µs (STEP_US); DDP's gradient
 * all-reduce runs on gloo's thread; copy_bucket_to_grad follows the backward
 * outside any named op, so it is "other". */
static void test_real_trace(void) {
  g_autofree char *path = g_build_filename(g_getenv("PARALLAX_DATA_DIR"), "tests", "ref", "trace_tiny_cpu.json", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(PxMeasuredStep) m = px_trace_load(path, &err);
  g_assert_no_error(err);
  g_assert_cmpstr(m->step_name, ==, "ProfilerStep#1");
  g_assert_cmpint(m->rank, ==, 0);
  g_assert_cmpint(m->world, ==, 1);
  g_assert_false(m->gpu);
  g_assert_cmpfloat_with_epsilon(m->step_time, STEP_US * 1e-6, 1e-9);
  for (int s = 0; s < PX_STEP_OTHER; s++) g_assert_cmpfloat(m->stage_time[s], >, 0);
  g_assert_cmpuint(m->other->len, >=, 1);
  gboolean copy = FALSE;
  for (guint i = 0; i < m->other->len; i++)
    copy |= !strcmp(g_array_index(m->other, PxOtherOp, i).name, "torch.distributed.ddp.reducer::copy_bucket_to_grad");
  g_assert_true(copy);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/trace/cpu", test_cpu_trace);
  g_test_add_func("/trace/gpu", test_gpu_trace);
  g_test_add_func("/trace/nsys", test_nsys_export);
  g_test_add_func("/trace/names", test_names);
  g_test_add_func("/trace/errors", test_errors);
  g_test_add_func("/trace/real", test_real_trace);
  return g_test_run();
}
