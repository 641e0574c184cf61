python3 /work/mtb/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:34272 --log /var/tmp/ftvmm-ft.CHxLTM/tcp.log
