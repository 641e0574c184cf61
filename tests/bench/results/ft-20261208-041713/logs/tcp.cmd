python3 /work/ci-bench-ftidle/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:39472 --log /var/tmp/ftvmm-ft.XgWQbO/tcp.log
