python3 /work/main/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:33372 --log /var/tmp/ftvmm-ft.qwV5Xc/tcp.log
