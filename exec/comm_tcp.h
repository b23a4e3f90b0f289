/* comm_tcp.h — the `tcp` communicator: one process per rank without MPI
 * (torchrun style), over TCP sockets (GIO).
 *
 * Rendezvous. Rank 0 listens at addr:port (MASTER_ADDR:MASTER_PORT) as a
 * small store; every other rank connects there (retrying until the deadline,
 * since rank 0 may start last), registers the address of a listening socket
 * of its own, and receives the table of every rank's address; then each rank
 * connects to every lower rank but 0 (whose registration connection is kept),
 * so that the ranks form a full mesh, one socket per pair. A rank that never
 * comes is named: "tcp rendezvous at 127.0.0.1:29500: ranks 2, 3 never
 * registered after 60 s".
 *
 * Messages carry a header (kind, communicator id, bytes); a reader thread per
 * peer socket sorts them into FIFO queues per (communicator, sender, channel:
 * point-to-point or collective), so that sends are eager and point-to-point is
 * non-overtaking per pair. Collectives run through position 0 of the
 * communicator: every other position sends it its contribution with a
 * description of the call (op, count, dtype, reduction, root); position 0
 * checks that all agree (PX_COMM_ERROR_MISMATCH on every rank otherwise),
 * reduces in rank order 0..n-1 (bf16 / fp16: in fp32, rounded once; they
 * travel as halves) and sends each position its result, so that every rank
 * gets bit-identical results, equal to `local`'s. Split children
 * are named "<parent id>/<split number>:<color>", the same on every member.
 *
 * Failure. Every wait has the deadline; a rank whose deadline passes names the
 * missing ranks and aborts the world. An abort (px_comm_abort, a timeout) is
 * sent to every peer, whose calls then fail with PX_COMM_ERROR_ABORTED
 * carrying the reason; a peer whose connection closes without saying goodbye
 * (its process died) fails every rank's waits with a sentence naming it. */
#pragma once
#include "comm.h"
#include "launch_env.h"

G_BEGIN_DECLS

/* The world communicator of rank `rank` of `world`, after the rendezvous at
 * addr:port (an IPv4/IPv6 address or a host name). timeout_s ≤ 0 means 60 s;
 * it bounds the rendezvous and every later wait. world 1 opens no socket. */
PxComm *px_comm_tcp_new(const char *addr, int port, int rank, int world, double timeout_s, GError **error);

/* px_comm_tcp_new with the rank, world and master of a filled PxLaunchEnv
 * (launch_env.h); MASTER_PORT defaults to 29500 (torchrun's). A world of more
 * than one rank without MASTER_ADDR is refused. */
PxComm *px_comm_tcp_new_from_env(const PxLaunchEnv *env, double timeout_s, GError **error);

/* A TCP port of 127.0.0.1 that no one listens on now (the OS's pick), or -1:
 * the default rendezvous port of `parallax-exec launch`. */
int px_tcp_free_port(void);

G_END_DECLS
