# tests/bench/peers-devices.gp - plot of peers-devices.sh (run in its results directory): per metric, ftvmm against each
# QEMU machine as the medians' ratio turned so that above 1 means ftvmm did better (devices.dat, peers-table.py).
set terminal pngcairo size 1100,480 font ",10"
set output "devices.png"
set title "ftvmm beside QEMU/KVM: disk and TCP (same guest, same test-bed boot); > 1: ftvmm better"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.6 border -1
set boxwidth 0.9
set grid ytics
set xtics rotate by -25 nomirror
set yrange [0:*]
set offsets 0, 0, 0.2, 0
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
peers = system("sed -n '2s/^# //p' devices.dat")
plot for [i = 1:words(peers)] "devices.dat" using (column(i + 1)):xtic(1) title "ftvmm vs ".word(peers, i)
