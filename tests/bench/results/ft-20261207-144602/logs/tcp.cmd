python3 /work/job-cow/tests/integration/ft_tcpcheck.py --listen 198.51.100.1:24972 --log /var/tmp/ftvmm-ft.qW3ah7/tcp.log
