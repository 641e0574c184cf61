python3 /work/main/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:37706 --log /var/tmp/ftvmm-ft.cJady1/tcp.log
