/* plot.h — pictures of a simulation (or a measurement): each function writes
 * its data file(s) into an output directory and runs the matching gnuplot
 * script of <data dir>/plots through GSubprocess, once for PNG (pngcairo when
 * gnuplot has it, else png) and once for SVG:
 *     gnuplot -e "scriptdir='...'; datafile='...'; outfile='...'; ..." plots/x.gp
 * Without gnuplot they fail with PX_PLOT_ERROR_NO_GNUPLOT ("gnuplot not found:
 * install the Debian package gnuplot-nox") after the data files are written;
 * callers still write their trace and CSV. */
#pragma once
#include <glib.h>
#include "timeline.h"

G_BEGIN_DECLS

#define PX_PLOT_ERROR (px_plot_error_quark())
GQuark px_plot_error_quark(void);
typedef enum {
  PX_PLOT_ERROR_NO_GNUPLOT,  /* gnuplot is not on PATH */
  PX_PLOT_ERROR_SCRIPT,      /* the .gp script is missing */
  PX_PLOT_ERROR_FAILED,      /* gnuplot ran and failed (its message is quoted) */
  PX_PLOT_ERROR_IO,          /* the output directory or a data file could not be written */
  PX_PLOT_ERROR_EMPTY,       /* nothing to plot */
} PxPlotError;

/* Time unit for a span of `seconds`: scale factor and name ("ms", "s", ...).
 * `ideal` timelines (T_F = 1) use "time units (T_F = 1)" and factor 1. */
double px_plot_time_unit(double seconds, gboolean ideal, const char **name);

/* Run <data dir>/plots/<script>.gp to make DIR/<base>.png and DIR/<base>.svg.
 * vars: extra gnuplot assignments ("capacity=80; ptitle='x'"), may be NULL. */
gboolean px_plot_run(const char *script, const char *dir, const char *base, const char *datafile,
                     const char *vars, GError **error);

/* Gantt chart: one row per simulated rank (labelled by stage when there is one
 * rank per stage), compute ops as boxes coloured by kind (chunks > 0 lighter),
 * communication streams as a thin strip under each row, idle time white,
 * micro-batch numbers in the boxes wide enough for them. Writes timeline.dat,
 * timeline.png, timeline.svg. ideal: times are in units of T_F. */
gboolean px_plot_timeline(const PxTimeline *tl, const char *dir, const char *title, gboolean ideal,
                          GError **error);

/* Several timelines in one Gantt chart on one time axis (e.g. predicted and
 * measured, run --compare): for each rank the row of each timeline, one under
 * the other, named "<label> rank R (stage S)"; DIR/<base>.dat (its first
 * lines name the rows: "# row 0: predicted rank 0 (stage 0)"), .png, .svg. */
gboolean px_plot_timelines(const PxTimeline *const *tls, const char *const *labels, int n, const char *dir,
                           const char *base, const char *title, GError **error);

/* Allocated bytes over time, one step line per rank, GB (1e9 B); capacity in
 * bytes draws the GPU's memory (0: none). memory.dat/png/svg. */
gboolean px_plot_memory(const PxTimeline *tl, const char *dir, const char *title, double capacity,
                        gboolean ideal, GError **error);

/* Bubble fraction versus micro-batch count: for each schedule the simulated
 * points and its analytic curve. bubble.dat, bubble_curve.dat, bubble.png/svg. */
typedef struct {
  const char *name;        /* "1f1b" */
  int n;                   /* points */
  const double *m;         /* (n) micro-batches */
  const double *simulated; /* (n) idle / step time from the engine */
  int n_curve;             /* analytic curve samples */
  const double *curve_m;   /* (n_curve) */
  const double *curve;     /* (n_curve) */
} PxBubbleSeries;
gboolean px_plot_bubble(const PxBubbleSeries *series, int n_series, const char *dir, const char *title,
                        GError **error);

/* Memory versus step time of many layouts, the Pareto front (layouts that fit
 * and that no other fitting layout beats in both) joined and labelled.
 * pareto.dat/png/svg. capacity in bytes (0: no line). */
typedef struct {
  double step_time;   /* s */
  double memory;      /* bytes, peak per GPU */
  gboolean fits;
  const char *label;  /* "dp8 tp4 pp2 1f1b" */
} PxParetoPoint;
/* Indices of the front in increasing step time; returns their count. */
int px_pareto_front(const PxParetoPoint *pts, int n, int *front);
gboolean px_plot_pareto(const PxParetoPoint *pts, int n, double capacity, const char *dir,
                        const char *title, GError **error);

G_END_DECLS
