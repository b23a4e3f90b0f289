# memory.gp — allocated memory over one step, one line per pipeline stage (or
# rank): weights, gradients and optimizer states are the floor, activations
# rise with each forward and fall with each backward.
# Variables (gnuplot -e): datafile  one block per row (two blank lines apart): t bytes/yunit
#                         names     legend entries, block order (no spaces inside)
#                         yunit     GB, MB, kB or B (decimal), chosen by the peak
#                         capacity  GPU memory in yunit (0: no line)
#                         xunit     x axis label
#                         tmax      end of the time axis
#                         ptitle, outfile, fmt (see common.gp)
if (!exists("ptitle")) ptitle = "Memory over the step"
if (!exists("xunit")) xunit = "time"
if (!exists("capacity")) capacity = 0
if (!exists("yunit")) yunit = "GB"
yscale = (yunit eq "GB") ? "10^9" : (yunit eq "MB") ? "10^6" : (yunit eq "kB") ? "10^3" : "1"
width = 1200; height = 650
load scriptdir . "/common.gp"
set title ptitle font ",14"
set xlabel xunit
set ylabel sprintf("allocated memory per GPU (%s = %s B)", yunit, yscale)
set xrange [0:tmax]
set yrange [0:*]
set offsets 0, 0, graph 0.06, 0
set key outside right vertical top font ",12" samplen 4 spacing 1.3
# rows that hold the same bytes (data-parallel replicas) would hide each
# other: each line is a little thinner than the one before, with its own dashes
n = words(names)
plot for [i=1:n] datafile index (i-1) using 1:2 with steps lw (n > 1 ? 4.5 - 3.0*(i-1)/(n-1) : 2) dt 1+(i-1)%5 lc i title word(names, i), \
     (capacity > 0 ? capacity : NaN) with lines dt 2 lw 2 lc rgb "#d62728" title (capacity > 0 ? sprintf("GPU memory %.1f %s", capacity, yunit) : "")
