/* test_buckets.c — the DP reduction bucket layout (common/buckets.h) by hand
 * on tiny-gpt, and where the program puts its REDUCE_GRADS bucket
 * instructions. */
#include <glib.h>
#include <string.h>
#include "buckets.h"
#include "memory.h"
#include "partition.h"
#include "schedule.h"

static PxModel *tiny(void) {
  GError *e = NULL;
  PxModel *m = px_model_load("tiny-gpt", &e);
  g_assert_no_error(e);
  return m;
}

/* pp = 1, dp = 2, fp32, tiny-gpt (h 64, vocab 256, seq 64, 4 blocks, tied). */
static void plan_tiny(PxPlan *p, double bucket_bytes) {
  px_plan_init(p);
  p->pp = 1;
  p->dp = 2;
  p->gbs = 4;
  p->mbs = 1;
  p->seq = 64;
  p->precision = PX_PREC_FP32;
  p->bucket_bytes = bucket_bytes;
}

/* Gradient elements per layer, by hand (GPT-2 style, biases):
 *   0 embedding: wte 256·64 + wpe 64·64 = 16384 + 4096 = 20480
 *   1-4 blocks:  ln1 128 + qkv 64·192 + 192 + proj 64·64 + 64 + ln2 128
 *                + fc 64·256 + 256 + fc2 256·64 + 64 = 12h² + 13h = 49984
 *   5 final norm: 128
 *   6 LM head: tied, no parameters of its own on the embedding's rank.
 * Buckets of 60000 elements (240000 B of fp32), filled from the last layer:
 * head 0 + norm 128 + block 4 49984 = 50112 < 60000, + block 3 = 100096:
 * bucket 0 = layers [3, 7); block 2 49984, + block 1 = 99968: bucket 1 =
 * [1, 3); the embedding closes bucket 2 = [0, 1), 20480. Total 220544.
 * Backward left after bucket 0 (by forward FLOPs per sequence of 64: block
 * 24 s h² + 4 s² h = 7340032, head 2 s h V = 2097152, norm and embedding
 * none): 1 - (2097152 + 2·7340032) / (2097152 + 4·7340032) = 7/15; after
 * bucket 1 nothing (only the embedding's scatter-add, no FLOPs). */
static void test_layout_hand(void) {
  g_autoptr(PxModel) m = tiny();
  PxPlan p;
  plan_tiny(&p, 240000);
  g_assert_cmpuint(m->n_layers, ==, 7);
  g_autoptr(GError) err = NULL;
  g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &err);
  g_assert_no_error(err);
  const PxBuckets *b = part->buckets;
  g_assert_nonnull(b);
  g_assert_cmpfloat(b->bucket_elems, ==, 60000);
  g_assert_cmpint(b->n[0], ==, 3);
  const PxBucket *k = b->b[0];
  int first[3] = {3, 1, 0}, end[3] = {7, 3, 1};
  double elems[3] = {100096, 99968, 20480}, after[3] = {7.0 / 15, 0, 0};
  for (int i = 0; i < 3; i++) {
    g_assert_cmpint(k[i].first, ==, first[i]);
    g_assert_cmpint(k[i].end, ==, end[i]);
    g_assert_cmpfloat(k[i].elems, ==, elems[i]);
    g_assert_cmpfloat_with_epsilon(k[i].share, elems[i] / 220544, 1e-15);
    g_assert_cmpfloat_with_epsilon(k[i].after, after[i], 1e-15);
  }
  g_assert_cmpint(px_buckets_of_layer(b, 0, 4), ==, 0);
  g_assert_cmpint(px_buckets_of_layer(b, 0, 2), ==, 1);
  g_assert_cmpint(px_buckets_of_layer(b, 0, 0), ==, 2);
  /* a bucket as large as the chunk (or larger): one */
  px_plan_clear(&p);
  plan_tiny(&p, 4.0 * 220544);
  g_autoptr(PxPartition) one = px_partition_new(m, &p, NULL, &err);
  g_assert_cmpint(one->buckets->n[0], ==, 1);
  g_assert_cmpint(one->buckets->b[0][0].first, ==, 0);
  g_assert_cmpint(one->buckets->b[0][0].end, ==, 7);
  g_assert_cmpfloat(one->buckets->b[0][0].share, ==, 1.0);
  /* FSDP's one per layer (its stack has no bucket size): 7 buckets, the LM head's empty */
  px_plan_clear(&p);
  plan_tiny(&p, 0);
  p.stack = PX_STACK_FSDP;
  g_autoptr(PxPartition) per = px_partition_new(m, &p, NULL, &err);
  g_assert_cmpint(per->buckets->n[0], ==, 7);
  g_assert_cmpfloat(per->buckets->b[0][0].elems, ==, 0);
  g_assert_cmpfloat(per->buckets->b[0][1].elems, ==, 128);
  /* Megatron-Core's default max(4e7, 1e6 dp) elements */
  p.stack = PX_STACK_MEGATRON_CORE;
  p.dp = 64;
  g_assert_cmpfloat(px_buckets_size(&p), ==, 6.4e7);
  px_plan_clear(&p);
}

/* pp = 2: the LM head on the last stage holds its own copy of wte (256·64),
 * whose gradient is reduced there; on one stage it has none. */
static void test_tied_copy(void) {
  g_autoptr(PxModel) m = tiny();
  PxPlan p;
  plan_tiny(&p, 0);
  g_autoptr(GError) err = NULL;
  g_autoptr(PxPartition) one = px_partition_new(m, &p, NULL, &err);
  g_assert_cmpfloat(px_buckets_layer_elems(m, &p, one, 0, 6, NULL), ==, 0);
  p.pp = 2;
  g_autoptr(PxPartition) two = px_partition_new(m, &p, NULL, &err);
  g_assert_no_error(err);
  g_assert_true(two->tied);
  g_assert_cmpfloat(px_buckets_layer_elems(m, &p, two, 1, 6, NULL), ==, 16384);
  px_plan_clear(&p);
}

/* The program: REDUCE_GRADS per bucket right after the chunk's last
 * backward, in reduction order, each naming the layer it waits for; without
 * a bucket size (the executor's stack does not overlap then) or with one
 * bucket, the program is the one without buckets. */
static void test_program(void) {
  g_autoptr(PxModel) m = tiny();
  PxPlan p;
  plan_tiny(&p, 240000);
  p.m = 2;
  g_autoptr(GError) err = NULL;
  g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &err);
  g_autoptr(PxProgram) prog = px_program_new(&p, part, &err);
  g_assert_no_error(err);
  g_autofree char *text = px_program_format_stage(prog, 0);
  g_assert_cmpstr(text, ==,
                  "LOAD mb=0\nFORWARD mb=0 chunk=0\nBACKWARD mb=0 chunk=0\n"
                  "LOAD mb=1\nFORWARD mb=1 chunk=0\nBACKWARD mb=1 chunk=0\n"
                  "REDUCE_GRADS chunk=0 bucket=0 layer=3\nREDUCE_GRADS chunk=0 bucket=1 layer=1\n"
                  "REDUCE_GRADS chunk=0 bucket=2 layer=0\nOPTIMIZER_STEP\n");
  const PxInstr *in = &prog->ranks[0].instrs[7];
  g_assert_cmpint(px_program_bucket(prog, 0, in)->first, ==, 1);
  const char *plain = "LOAD mb=0\nFORWARD mb=0 chunk=0\nBACKWARD mb=0 chunk=0\n"
                      "LOAD mb=1\nFORWARD mb=1 chunk=0\nBACKWARD mb=1 chunk=0\n"
                      "REDUCE_GRADS chunk=0\nOPTIMIZER_STEP\n";
  for (int i = 0; i < 2; i++) {
    px_plan_clear(&p);
    plan_tiny(&p, i ? 1e9 : 0);
    p.m = 2;
    g_autoptr(PxPartition) q = px_partition_new(m, &p, NULL, &err);
    g_autoptr(PxProgram) pr = px_program_new(&p, q, &err);
    g_autofree char *t = px_program_format_stage(pr, 0);
    g_assert_cmpstr(t, ==, plain);
  }
  /* ZB-H1 at pp 2: the buckets follow the chunk's last W */
  px_plan_clear(&p);
  plan_tiny(&p, 240000);
  p.pp = 2;
  p.m = 2;
  p.schedule = PX_SCHED_ZB_H1;
  g_autoptr(PxPartition) q = px_partition_new(m, &p, NULL, &err);
  g_autoptr(PxProgram) zb = px_program_new(&p, q, &err);
  g_assert_no_error(err);
  for (int s = 0; s < 2; s++) {
    const PxRankProgram *rp = &zb->ranks[s];
    int last_w = -1, first_dp = -1, n_dp = 0;
    for (guint i = 0; i < rp->n; i++) {
      if (rp->instrs[i].kind == PX_OP_BACKWARD_WEIGHT) last_w = (int)i;
      if (rp->instrs[i].kind == PX_OP_REDUCE_GRADS) {
        if (first_dp < 0) first_dp = (int)i;
        g_assert_cmpint(rp->instrs[i].bucket, ==, n_dp++);
        g_assert_cmpint(rp->instrs[i].layer, ==, q->buckets->b[s][rp->instrs[i].bucket].first);
      }
    }
    g_assert_cmpint(n_dp, ==, q->buckets->n[s]);
    g_assert_cmpint(first_dp, >, last_w);
  }
  px_plan_clear(&p);
}

/* tiny-moe by hand (h 32, 4 heads of 8, 2 KV heads, SwiGLU ffn 64, vocab
 * 128, untied, no biases; blocks 1 and 3 MoE of 4 experts of 32, ffn 32):
 * layers 0 embedding, 1-4 blocks 0-3, 5 final norm, 6 head. Embedding and
 * head 128·32 = 4096 each, final norm 32; a dense block 2·32 (norms) +
 * 32·64 (qkv) + 32·32 (proj) + 3·64·32 (SwiGLU) = 9280; an MoE block's
 * dense tensors 64 + 2048 + 1024 + 4·32 (router) = 3264 and E/ep experts of
 * 3·32·32 = 3072 each (ep 2: 6144). Per layer (dense, experts), head first:
 * (4096, 0) (32, 0) (3264, 6144) (9280, 0) (3264, 6144) (9280, 0) (4096, 0);
 * dense 33312, experts 12288 in all. */
static void plan_moe(PxPlan *p, double bucket_bytes) {
  px_plan_init(p);
  p->dp = 4;
  p->ep = 2;
  p->gbs = 8;
  p->mbs = 1;
  p->seq = 16;
  p->zero = 1;
  p->precision = PX_PREC_FP32;
  p->bucket_bytes = bucket_bytes;
}

static PxModel *tiny_moe(void) {
  GError *e = NULL;
  PxModel *m = px_model_load("tiny-moe", &e);
  g_assert_no_error(e);
  return m;
}

/* Buckets of 6000 elements (24000 B of fp32), the two sequences on their
 * own elements (Megatron-Core's dense and expert-parallel buffers). Dense,
 * from the head: 4096, + norm 32 = 4128, + block 3's 3264 = 7392 >= 6000:
 * D0 = [4, 7) closed by block 3; block 2 9280: D1 = [3, 4); block 1 3264,
 * + block 0 9280 = 12544: D2 = [1, 3) closed by block 0; the embedding
 * 4096: D3 = [0, 1). Experts: block 3's 6144 >= 6000: E0 = [4, 5); block
 * 1's 6144, the lowest layer with experts: E1 = [2, 3). (Sized on their
 * sum, as before, the buckets were [4, 7) [3, 4) [2, 3) [1, 2) [0, 1): the
 * dense D2 now spans blocks 1 and 0 while block 1's experts are a bucket of
 * their own.) In the order they become ready, the experts' first where one
 * layer closes both: E0 D0 D1 E1 D2 D3, the program's buckets 0-5. Shares:
 * of the dense 33312 or of the experts' 12288. Backward left once done: 1
 * less the forward FLOPs of the layers from the closing one up, over all.
 * ZeRO-1 over dp 4 · ep 2 (edp 2), in buffer order: the dense buffer D3
 * 4096 (slice 1024, at 0 in the buffers and the shard), D2 12544 (slice
 * 3136, at 4096, shard 1024), D1 9280 (2320, 16640, 4160), D0 7392 (1848,
 * 25920, 6480): 33312, shard 8328; the experts' E1 6144 (3072, 33312, 8328)
 * and E0 (3072, 39456, 11400): 45600 in all, shard 14472 of which experts
 * 6144. Memory (fp32, ZeRO-1): weights and gradients 4 B · 45600,
 * optimizer 8 B · 14472. */
static void test_moe_layout_hand(void) {
  g_autoptr(PxModel) m = tiny_moe();
  g_assert_cmpuint(m->n_layers, ==, 7);
  PxPlan p;
  plan_moe(&p, 24000);
  g_autoptr(GError) e = NULL;
  g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &e);
  g_assert_no_error(e);
  const PxBuckets *b = part->buckets;
  g_assert_cmpfloat(b->bucket_elems, ==, 6000);
  g_assert_cmpint(b->n[0], ==, 6);
  double f[7], all = 0;
  for (int li = 0; li < 7; li++) all += f[li] = px_layer_forward_flops(m, &m->layers[li], 16);
  int first[6] = {4, 4, 3, 2, 1, 0}, end[6] = {5, 7, 4, 3, 3, 1};
  gboolean ex[6] = {TRUE, FALSE, FALSE, TRUE, FALSE, FALSE};
  double elems[6] = {6144, 7392, 9280, 6144, 12544, 4096};
  double share[6] = {0.5, 7392.0 / 33312, 9280.0 / 33312, 0.5, 12544.0 / 33312, 4096.0 / 33312};
  double done[6]; /* forward FLOPs of layers [first, 7): the backward done when the bucket closes */
  for (int i = 0; i < 6; i++) {
    done[i] = 0;
    for (int li = first[i]; li < 7; li++) done[i] += f[li];
  }
  for (int i = 0; i < 6; i++) {
    const PxBucket *k = &b->b[0][i];
    g_assert_cmpint(k->first, ==, first[i]);
    g_assert_cmpint(k->end, ==, end[i]);
    g_assert_cmpint(k->expert, ==, ex[i]);
    g_assert_cmpfloat(k->elems, ==, elems[i]);
    g_assert_cmpfloat_with_epsilon(k->share, share[i], 1e-15);
    g_assert_cmpfloat_with_epsilon(k->after, first[i] == 0 ? 0 : 1 - done[i] / all, 1e-12);
  }
  /* the embedding's, block 2's and the final norm's experts: in none */
  g_assert_cmpint(px_buckets_of_layer(b, 0, 2), ==, 4);
  g_assert_cmpint(px_buckets_find(b, 0, 2, TRUE), ==, 3);
  g_assert_cmpint(px_buckets_find(b, 0, 4, TRUE), ==, 0);
  g_assert_cmpint(px_buckets_of_layer(b, 0, 5), ==, 1);
  g_assert_cmpint(px_buckets_find(b, 0, 3, TRUE), ==, -1);
  g_assert_cmpint(px_buckets_find(b, 0, 0, TRUE), ==, -1);
  /* ZeRO-1 shards per bucket */
  g_assert_true(px_buckets_sharded(b, m, &p, 0));
  PxBucketShard bs[6];
  gint64 padded, exs;
  g_assert_cmpint(px_buckets_shard_layout(b, 0, 4, 2, bs, &padded, &exs), ==, 14472);
  g_assert_cmpint(padded, ==, 45600);
  g_assert_cmpint(exs, ==, 6144);
  gint64 slice[6] = {3072, 1848, 2320, 3072, 3136, 1024}, base[6] = {39456, 25920, 16640, 33312, 4096, 0};
  gint64 at[6] = {11400, 6480, 4160, 8328, 1024, 0};
  for (int i = 0; i < 6; i++) {
    g_assert_cmpint(bs[i].elems, ==, (gint64)elems[i]);
    g_assert_cmpint(bs[i].slice, ==, slice[i]);
    g_assert_cmpint(bs[i].base, ==, base[i]);
    g_assert_cmpint(bs[i].at, ==, at[i]);
  }
  g_autoptr(PxMemory) mem = px_memory_new(m, &p, part, NULL);
  g_assert_cmpfloat(mem->stages[0].weights, ==, 4.0 * 45600);
  g_assert_cmpfloat(mem->stages[0].gradients, ==, 4.0 * 45600);
  g_assert_cmpfloat(mem->stages[0].optimizer, ==, 8.0 * 14472);
  /* the program: one REDUCE_GRADS per bucket, in that order, each naming its
   * closing layer, the expert buckets marked */
  p.m = 1;
  g_autoptr(PxProgram) prog = px_program_new(&p, part, &e);
  g_assert_no_error(e);
  g_autofree char *text = px_program_format_stage(prog, 0);
  g_assert_nonnull(strstr(text, "BACKWARD mb=0 chunk=0\n"
                                "REDUCE_GRADS chunk=0 bucket=0 layer=4 experts\nREDUCE_GRADS chunk=0 bucket=1 layer=4\n"
                                "REDUCE_GRADS chunk=0 bucket=2 layer=3\nREDUCE_GRADS chunk=0 bucket=3 layer=2 experts\n"
                                "REDUCE_GRADS chunk=0 bucket=4 layer=1\nREDUCE_GRADS chunk=0 bucket=5 layer=0\n"
                                "OPTIMIZER_STEP\n"));
  /* a bucket as large as both sequences: one of each, still two reductions
   * (the experts' ready once block 1 is done); the dense model's rule gave one */
  px_plan_clear(&p);
  plan_moe(&p, 4.0 * 1e6);
  g_autoptr(PxPartition) big = px_partition_new(m, &p, NULL, &e);
  g_assert_cmpint(big->buckets->n[0], ==, 2);
  g_assert_true(big->buckets->b[0][0].expert);
  g_assert_cmpint(big->buckets->b[0][0].first, ==, 2);
  g_assert_cmpint(big->buckets->b[0][0].end, ==, 5);
  g_assert_cmpfloat(big->buckets->b[0][0].elems, ==, 12288);
  g_assert_cmpfloat(big->buckets->b[0][0].share, ==, 1.0);
  g_assert_false(big->buckets->b[0][1].expert);
  g_assert_cmpint(big->buckets->b[0][1].first, ==, 0);
  g_assert_cmpfloat(big->buckets->b[0][1].elems, ==, 33312);
  g_assert_cmpfloat(big->buckets->b[0][1].after, ==, 0);
  px_plan_clear(&p);
}

/* MoE ZeRO-1/2 shards per bucket at 2000 elements (8000 B of fp32), by hand
 * on tiny-moe (above). Dense from the head: head 4096 | norm + block 3 3296 |
 * block 2 9280 | block 1 3264 | block 0 9280 | embedding 4096; experts:
 * block 3's 6144 | block 1's 6144. Merged: D(head) E(block 3) D(norm, block 3)
 * D(block 2) E(block 1) D(block 1) D(block 0) D(embedding). dp 4 · ep 2: the
 * dense buffer in layer order, each region over dp 4 (all divide: slices
 * 1024 2320 816 2320 824 1024 from the embedding's), 33312 elements, then
 * the experts' buffer over edp 2: block 1's 6144 at 33312 (slice 3072, at
 * 8328 in the shard), block 3's at 39456 (at 11400); 45600 in all, shard
 * 8328 + 6144 = 14472. The planner's memory (fp32, ZeRO-1): weights and
 * gradients 4 B · 45600, optimizer 8 B · 14472. dp 3 · ep 1 (the experts
 * over edp 3 = the DP ranks, 4 experts: 12288 per MoE block): dense regions
 * padded to 4098 9282 3264 9282 3297 4098 = 33321 (shard 11107), the
 * experts' 3 · 4096 each (shard 8192): weights 4 B · (33321 + 24576),
 * optimizer 8 B · 19299. */
static void test_moe_shards(void) {
  g_autoptr(PxModel) m = tiny_moe();
  PxPlan p;
  plan_moe(&p, 8000);
  GError *e = NULL;
  g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &e);
  g_assert_no_error(e);
  const PxBuckets *b = part->buckets;
  g_assert_cmpint(b->n[0], ==, 8);
  g_assert_true(px_buckets_sharded(b, m, &p, 0));
  double elems[8] = {4096, 6144, 3296, 9280, 6144, 3264, 9280, 4096};
  gboolean ex[8] = {FALSE, TRUE, FALSE, FALSE, TRUE, FALSE, FALSE, FALSE};
  int first[8] = {6, 4, 4, 3, 2, 2, 1, 0};
  gint64 base[8] = {29216, 39456, 25920, 16640, 33312, 13376, 4096, 0};
  gint64 at[8] = {7304, 11400, 6480, 4160, 8328, 3344, 1024, 0};
  PxBucketShard bs[8];
  gint64 padded, exs;
  g_assert_cmpint(px_buckets_shard_layout(b, 0, 4, 2, bs, &padded, &exs), ==, 14472);
  g_assert_cmpint(padded, ==, 45600);
  g_assert_cmpint(exs, ==, 6144);
  for (int i = 0; i < 8; i++) {
    g_assert_cmpint(b->b[0][i].first, ==, first[i]);
    g_assert_cmpfloat(b->b[0][i].elems, ==, elems[i]);
    g_assert_cmpint(b->b[0][i].expert, ==, ex[i]);
    g_assert_cmpint(bs[i].elems, ==, (gint64)elems[i]);
    g_assert_cmpint(bs[i].slice, ==, (gint64)elems[i] / (ex[i] ? 2 : 4));
    g_assert_cmpint(bs[i].base, ==, base[i]);
    g_assert_cmpint(bs[i].at, ==, at[i]);
  }
  g_autoptr(PxMemory) mem = px_memory_new(m, &p, part, NULL);
  g_assert_cmpfloat(mem->stages[0].weights, ==, 4.0 * 45600);
  g_assert_cmpfloat(mem->stages[0].gradients, ==, 4.0 * 45600);
  g_assert_cmpfloat(mem->stages[0].optimizer, ==, 8.0 * 14472);
  /* dp 3, ep 1: padded dense regions */
  p.dp = 3;
  p.ep = 1;
  p.gbs = 6;
  g_autoptr(PxPartition) p3 = px_partition_new(m, &p, NULL, &e);
  g_assert_no_error(e);
  g_assert_cmpint(p3->buckets->n[0], ==, 8);
  g_assert_cmpint(px_buckets_shard_layout(p3->buckets, 0, 3, 3, bs, &padded, &exs), ==, 19299);
  g_assert_cmpint(padded, ==, 33321 + 24576);
  g_assert_cmpint(exs, ==, 8192);
  g_autoptr(PxMemory) m3 = px_memory_new(m, &p, p3, NULL);
  g_assert_cmpfloat(m3->stages[0].weights, ==, 4.0 * (33321 + 24576));
  g_assert_cmpfloat(m3->stages[0].optimizer, ==, 8.0 * 19299);
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/buckets/layout-hand", test_layout_hand);
  g_test_add_func("/buckets/tied-copy", test_tied_copy);
  g_test_add_func("/buckets/program", test_program);
  g_test_add_func("/buckets/moe-shards", test_moe_shards);
  g_test_add_func("/buckets/moe-layout-hand", test_moe_layout_hand);
  return g_test_run();
}
