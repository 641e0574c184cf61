# tests/bench/ft-plots.gp - plots for tests/bench/ft.sh; run by ft.sh in the results directory after ft-analyze.py
load 'plots-vars.gp'
set terminal pngcairo size 1000,560 noenhanced font ",10"
set datafile missing "?"
set key outside right top
set grid ytics

set output 'ratio.png'
set title "Throughput with FT on / FT off (1.0 = no cost)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set ylabel "ratio"
plot for [i=2:ncols] 'ratio.dat' using i:xtic(1) title columnheader(i)

set output 'pause.png'
set title "Mean checkpoint pause (ms) per workload"
set ylabel "ms"
plot for [i=2:ncols] 'pause.dat' using i:xtic(1) title columnheader(i)

set output 'bytes.png'
set title "Mean bytes sent per epoch (KiB)"
set ylabel "KiB"
set logscale y
set yrange [*:*]
plot for [i=2:ncols] 'bytes.dat' using i:xtic(1) title columnheader(i)
unset logscale y

set output 'breakdown.png'
set title "Where the pause goes (mean ms per epoch): workload/epoch-ms"
set style histogram rowstacked
set yrange [0:*]
set xtics rotate by -45
set ylabel "ms"
plot 'breakdown.dat' using 2:xtic(1) title 'stop', '' using 3 title 'harvest', '' using 4 title 'copy', \
     '' using 5 title 'state', '' using 6 title 'resume'
set xtics norotate

set output 'rr.png'
set title "TCP request/response latency (ms)"
set style histogram clustered gap 1
set logscale y
set yrange [*:*]
plot 'rr.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p99'
unset logscale y


set output 'pause-vs-pages.png'
set title "Pause per epoch against dirty pages (each point one epoch)"
unset style
set style data points
set logscale xy
set xlabel "pages in the epoch"
set ylabel "microseconds"
set yrange [*:*]
set xrange [*:*]
n = words(epochs)
plot for [i=0:n-1] 'pause-scatter.dat' index i using 1:2 with points pt 7 ps 0.5 title sprintf("pause, %s ms epochs", word(epochs, i+1)), \
     for [i=0:n-1] 'pause-scatter.dat' index i using 1:3 with points pt 1 ps 0.5 title sprintf("copy step, %s ms", word(epochs, i+1)), \
     'memcpy.dat' using 1:2 with linespoints lw 2 title "plain memcpy of the pages (same host)"

# last: gnuplot stops at the first plot without data, and a run may have no failover rows
if (system("awk 'NR > 1' failover.dat | grep -c '[0-9]'") + 0 > 0) {
    unset logscale
    set xrange [*:*]
    set yrange [0:*]
    set xlabel ""
    set style data histograms
    set style histogram clustered gap 1
    set style fill solid 0.8 border -1
    set output 'failover.png'
    set title "Failover: seconds from kill -9 of the primary"
    set yrange [0:*]
    set ylabel "s"
    plot 'failover.dat' using 2:xtic(1) title "backup takes over", '' using 3 title "guest's next line", \
         '' using 4 title "TCP stream moves"
}
