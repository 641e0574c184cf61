# tests/bench/peers-snapshot.gp - plot of peers-snapshot.sh (run in its results directory): per metric, ftvmm against each
# QEMU way of saving as the medians' ratio turned so that above 1 means ftvmm did better (snapshot.dat, peers-table.py).
set terminal pngcairo size 1000,480 font ",10"
set output "snapshot.png"
set title "ftvmm beside QEMU/KVM: snapshot to a file and restore (same guest, same test-bed boot); > 1: ftvmm better"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.6 border -1
set boxwidth 0.9
set grid ytics
set logscale y
set xtics rotate by -20 nomirror
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
peers = system("sed -n '2s/^# //p' snapshot.dat")
plot for [i = 1:words(peers)] "snapshot.dat" using (column(i + 1)):xtic(1) title "ftvmm vs ".word(peers, i)
