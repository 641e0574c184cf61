# tests/bench/peers-boot.gp - plots of peers-boot.sh (run in its results directory): medians with min-max bars per VMM.
set terminal pngcairo size 1000,420 font ",10"
set output "boot.png"
set multiplot layout 1,2 title "ftvmm beside QEMU/KVM: boot (same guest, same test-bed boot)"
set style fill solid 0.5 border -1
set boxwidth 0.5
set grid ytics
set xtics nomirror
set yrange [0:*]
set title "wall time to the guest's init (s)"
plot "boot.dat" using 0:2:xtic(1) with boxes notitle, "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0 notitle
set title "VMM memory beside guest RAM (MiB)"
plot "boot.dat" using 0:5:xtic(1) with boxes notitle, "" using 0:5:6:7 with yerrorbars lc rgb "black" pt 0 notitle
unset multiplot
