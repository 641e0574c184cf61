python3 /work/ci-dbench/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:38672 --log /var/tmp/ftvmm-ft.1inye0/tcp.log
