# timeline.gp — Gantt chart of one training step: one row per pipeline stage
# (or rank), time to the right. Compute ops are boxes coloured by kind, the
# communication streams a thin strip under each row; what is left white is
# idle time (the bubble). Micro-batch numbers sit in boxes wide enough.
# Variables (gnuplot -e): datafile  block 0 boxes:  x_center y half_width half_height 0xRRGGBB
#                                   block 1 labels: x y "text"
#                                   block 2 overlapped F&B pairs (one black border round both ops):
#                                           x_center y half_width half_height
#                         npairs    number of pairs (0: block 2 holds one NaN line)
#                         rowtics   ytic list: '"stage 0" 0, "stage 1" 1'
#                         nrows     number of rows
#                         tmax      end of the time axis
#                         xunit     x axis label
#                         names     legend entries (space separated, no spaces inside)
#                         colors    their colours ("#4c72b0 #dd8452 ...")
#                         ptitle, width, height, outfile, fmt (see common.gp)
if (!exists("ptitle")) ptitle = "Pipeline timeline"
if (!exists("xunit")) xunit = "time"
if (!exists("names")) names = ""
if (!exists("colors")) colors = ""
if (!exists("npairs")) npairs = 0
load scriptdir . "/common.gp"
set title ptitle font ",14"
set xlabel xunit
set xrange [0:tmax]
set yrange [nrows - 0.45:-0.6]
eval "set ytics (" . rowtics . ")"
set ytics scale 0
unset grid
set grid xtics back lc rgb "#e8e8e8"
set style fill solid 1.0 border lc rgb "#ffffff"
set key bmargin horizontal center samplen 1.5 width 1
set bmargin 6
pairtitle = npairs > 0 ? "overlapped F&B pair" : ""
plot datafile index 0 using 1:2:3:4:5 with boxxyerror fc rgb variable notitle, \
     datafile index 1 using 1:2:3 with labels font ",9" tc rgb "#ffffff" notitle, \
     datafile index 2 using 1:2:3:4 with boxxyerror lc rgb "#000000" lw 2 fs empty notitle, \
     for [i=1:words(names)] NaN with boxes fs solid 1.0 fc rgb word(colors, i) title word(names, i), \
     (npairs > 0 ? NaN : 1/0) with boxes lc rgb "#000000" lw 2 fs empty title pairtitle noenhanced
