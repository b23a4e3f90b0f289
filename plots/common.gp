# common.gp — terminal and style shared by the Parallax plots. Loaded by each
# script after it sets `width` and `height` (pixels). Variables from the caller
# (gnuplot -e): outfile (path), fmt ('png' or 'svg', default from outfile).
if (!exists("outfile")) outfile = "plot.png"
if (!exists("fmt")) fmt = (strstrt(outfile, ".svg") > 0) ? "svg" : "png"
if (!exists("width")) width = 1200
if (!exists("height")) height = 600
if (fmt eq "svg") {
  set terminal svg size width, height dynamic enhanced font "DejaVu Sans,12" background rgb "white"
} else {
  if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size width, height enhanced font "DejaVu Sans,11" background rgb "white"
  } else {
    set terminal png size width, height font "DejaVu Sans,11" background rgb "white"
  }
}
set output outfile
set encoding utf8
set grid back lc rgb "#dddddd" lw 1
set border lc rgb "#444444"
set key tmargin horizontal center noautotitle font ",12" samplen 3
