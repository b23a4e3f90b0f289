# pareto.gp — per-GPU peak memory versus step time of the layouts a search
# explored; the Pareto front (no other layout is both faster and smaller) is
# joined and labelled (a few points, spaced by the caller, on white boxes), layouts that do not fit are greyed, the GPU's capacity
# is a dashed line.
# Variables (gnuplot -e): datafile  block 0: every layout: step_s memory_GB fits(0/1) "label"
#                                   block 1: the front, by step time, same columns
#                         capacity  GPU memory in GB (0: no line)
#                         ptitle    plot title
#                         outfile, fmt (see common.gp)
if (!exists("ptitle")) ptitle = "Layouts: memory versus step time"
if (!exists("capacity")) capacity = 0
width = 1100; height = 700
load scriptdir . "/common.gp"
set title ptitle font ",14"
set xlabel "step time (s)"
set ylabel "peak memory per GPU (GB = 10^9 B)"
set key top right vertical inside box opaque font ",12" samplen 3 spacing 1.3
set yrange [0:*]
set autoscale xfix
# room for the labels: on the right (they start right of their point) and above
set offsets graph 0.03, graph 0.30, graph 0.10, 0
# labels on white boxes, readable over the cloud of points
set style textbox opaque noborder fillcolor rgb "white" margins 1, 1
plot datafile index 0 using 1:($3 == 0 ? $2 : 1/0) with points pt 6 ps 1.0 lc rgb "#aaaaaa" title "does not fit", \
     datafile index 0 using 1:($3 != 0 ? $2 : 1/0) with points pt 7 ps 1.0 lc rgb "#1f77b4" title "fits", \
     datafile index 1 using 1:2 with linespoints pt 7 ps 1.6 lw 2 lc rgb "#ff7f0e" title "Pareto front", \
     (capacity > 0 ? capacity : NaN) with lines dt 2 lw 2 lc rgb "#d62728" title (capacity > 0 ? sprintf("GPU memory %.0f GB", capacity) : ""), \
     datafile index 1 using 1:(strlen(strcol(4)) > 0 ? $2 : 1/0):4 with labels left boxed offset 1.5, 0.4 font ",9" tc rgb "#222222" notitle
