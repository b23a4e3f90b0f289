# bubble.gp — pipeline bubble fraction (idle / step time) versus micro-batches
# per step, one colour per schedule: the analytic formula as a line, the event
# engine's simulated value (ideal costs) as points.
# Variables (gnuplot -e): datafile  simulated points, one block per schedule
#                                   (blocks separated by two blank lines): m bubble
#                         curvefile analytic curves, same blocks: m bubble
#                         names     schedule names, space separated, block order
#                         ptitle    plot title
#                         outfile, fmt (see common.gp)
if (!exists("ptitle")) ptitle = "Pipeline bubble"
if (!exists("names")) names = "gpipe 1f1b interleaved zb-h1"
width = 1000; height = 650
load scriptdir . "/common.gp"
array colors[6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
array points[6] = [6, 4, 8, 10, 12, 14]   # open circle, square, triangles, diamond: coinciding schedules stay visible
set title ptitle font ",14"
set xlabel "micro-batches per step (m)"
set ylabel "bubble fraction = idle / step time"
set logscale x 2
set xtics 2
set format x "%g"
set yrange [0:1]
set offsets graph 0.02, graph 0.03, 0, 0
set ytics 0.1
set key top right vertical inside box opaque
n = words(names)
plot for [i=1:n] curvefile index (i-1) using 1:2 with lines lw 2 dt i lc rgb colors[(i-1)%6+1] title word(names, i), \
     for [i=1:n] datafile index (i-1) using 1:2 with points pt points[(i-1)%6+1] ps (2.4 - 0.3*i) lw 2 lc rgb colors[(i-1)%6+1] notitle, \
     NaN with lines lw 2 lc rgb "#444444" title "analytic", \
     NaN with points pt 6 ps 1.4 lw 2 lc rgb "#444444" title "simulated"
