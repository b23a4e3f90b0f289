/* timeline.h — what happened during one step, rank by rank and stream by
 * stream: simulated by the engine or measured by the executor, in one format.
 * Writers: Chrome/Perfetto trace JSON, CSV, ASCII Gantt. */
#pragma once
#include <glib.h>
#include "schedule.h"

G_BEGIN_DECLS

#define PX_TIMELINE_ERROR (px_timeline_error_quark())
GQuark px_timeline_error_quark(void);
typedef enum {
  PX_TIMELINE_ERROR_IO,     /* a file could not be written or read */
  PX_TIMELINE_ERROR_PARSE,  /* a CSV line that does not parse */
} PxTimelineError;

typedef enum {
  PX_STREAM_COMPUTE,     /* F, B, W, load, optimizer */
  PX_STREAM_SEND,        /* p2p sends */
  PX_STREAM_RECV,        /* p2p receives (the transfer as the receiver sees it) */
  PX_STREAM_COLLECTIVE,  /* DP reduction, tied reduction, ZeRO-3 gather */
  PX_N_STREAMS
} PxStreamKind;

typedef struct {
  int rank;            /* global rank */
  int stage;           /* pipeline rank */
  PxStreamKind stream;
  PxOpKind kind;
  int mb, chunk;       /* -1 when none */
  double start, end;   /* seconds from the start of the step */
  double bytes;        /* bytes moved (communication; a forward's or backward's: its ZeRO-3
                          layer gathers, common/zero3.h), 0 otherwise */
  int bucket;          /* REDUCE_GRADS in buckets: the bucket (schedule.h), -1 otherwise */
} PxEvent;

typedef struct {
  int rank;
  double t;            /* seconds */
  double bytes;        /* allocated bytes from t on */
} PxMemSample;

/* An overlapped F&B pair (dualpipev's OVERLAP): its two compute events on
 * the rank's compute stream, from the first's start to the second's end. */
typedef struct {
  int rank;
  double start, end;   /* seconds */
} PxPair;

typedef struct {
  GArray *events;      /* PxEvent */
  GArray *memory;      /* PxMemSample, per rank in time order */
  GArray *pairs;       /* PxPair */
} PxTimeline;

PxTimeline *px_timeline_new(void);
void px_timeline_free(PxTimeline *tl);
void px_timeline_add(PxTimeline *tl, const PxEvent *ev);
void px_timeline_add_memory(PxTimeline *tl, int rank, double t, double bytes);
void px_timeline_add_pair(PxTimeline *tl, int rank, double start, double end);
/* Sort events by (rank, stream, start). */
void px_timeline_sort(PxTimeline *tl);
double px_timeline_end(const PxTimeline *tl);

const char *px_stream_name(PxStreamKind s);
gboolean px_stream_parse(const char *s, PxStreamKind *out);
/* "F3", "F3.c1" (chunk shown when the timeline has more than one chunk),
 * "DP.c0", "OPT" ... */
char *px_event_label(const PxEvent *ev, gboolean show_chunk);

/* Chrome trace event format: one track (pid = rank, tid = stream) per rank and
 * stream, "X" complete events in microseconds, memory as "C" counter events. */
char *px_timeline_to_trace_json(const PxTimeline *tl);
gboolean px_timeline_write_trace(const PxTimeline *tl, const char *path, GError **error);
/* n timelines on one time axis (e.g. predicted and measured): timeline i's
 * rank r is process i·(max rank + 1) + r, named "labels[i] rank r (stage s)",
 * the tracks of one rank next to each other. */
gboolean px_timelines_write_trace(const PxTimeline *const *tls, const char *const *labels, int n, const char *path,
                                  GError **error);
/* rank,stage,stream,kind,mb,chunk,start_s,end_s,bytes — with a header line. */
char *px_timeline_to_csv(const PxTimeline *tl);
gboolean px_timeline_write_csv(const PxTimeline *tl, const char *path, GError **error);
PxTimeline *px_timeline_load_csv(const char *path, GError **error);
/* ASCII Gantt: one row per stage (its first rank's compute stream), time
 * scaled to `width` columns in all (at least 10 for the time axis); a cell
 * shows the op kind covering most of it — forward '-', backward '=', weight
 * pass '~', other compute 'o' — or ' ' when less than half of it is busy.
 * Ops are labelled "F3" / "B3" / "W3" (".c1" for chunks) where that fits, or
 * with the bare micro-batch number where a fill character still shows beside
 * it. A legend line ends it. */
char *px_timeline_gantt(const PxTimeline *tl, int width);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxTimeline, px_timeline_free)

G_END_DECLS
