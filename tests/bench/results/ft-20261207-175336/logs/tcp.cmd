python3 /work/ci-dbench/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:22712 --log /var/tmp/ftvmm-ft.hqlYRX/tcp.log
