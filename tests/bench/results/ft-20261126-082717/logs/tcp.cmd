python3 /work/main/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:37566 --log /var/tmp/ftvmm-ft.j8qgJJ/tcp.log
