# memory.gp — allocated memory over one step, one line per pipeline stage (or
# rank): weights, gradients and optimizer states are the floor, activations
# rise with each forward and fall with each backward.
# Variables (gnuplot -e): datafile  one block per row (two blank lines apart): t GB
#                         names     legend entries, block order (no spaces inside)
#                         capacity  GPU memory in GB (0: no line)
#                         xunit     x axis label
#                         tmax      end of the time axis
#                         ptitle, outfile, fmt (see common.gp)
if (!exists("ptitle")) ptitle = "Memory over the step"
if (!exists("xunit")) xunit = "time"
if (!exists("capacity")) capacity = 0
width = 1200; height = 650
load scriptdir . "/common.gp"
set title ptitle font ",14"
set xlabel xunit
set ylabel "allocated memory per GPU (GB = 10^9 B)"
set xrange [0:tmax]
set yrange [0:*]
set offsets 0, 0, graph 0.06, 0
set key outside right vertical top
plot for [i=1:words(names)] datafile index (i-1) using 1:2 with steps lw 2 lc i title word(names, i), \
     (capacity > 0 ? capacity : NaN) with lines dt 2 lw 2 lc rgb "#d62728" title (capacity > 0 ? sprintf("GPU memory %.1f GB", capacity) : "")
