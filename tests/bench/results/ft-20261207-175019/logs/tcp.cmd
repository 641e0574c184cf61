python3 /work/ci-dbench/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:36812 --log /var/tmp/ftvmm-ft.mfe3Ul/tcp.log
