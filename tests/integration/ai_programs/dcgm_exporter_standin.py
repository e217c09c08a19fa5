"""STAND-IN for NVIDIA's dcgm-exporter (no GPU exists on the test machines).

Serves the metric names dcgm-exporter serves, in Prometheus text format, with a fixed
value per fake GPU: enough for Prometheus to scrape a real target of that shape.
Usage: python dcgm_exporter_standin.py PORT
"""

from __future__ import annotations

import sys
import time

from prometheus_client import Gauge, start_http_server

LABELS = ["gpu", "UUID", "device", "modelName", "Hostname"]


def main() -> None:
    port = int(sys.argv[1])
    utilisation = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", LABELS)
    temperature = Gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", LABELS)
    labels = ["0", "GPU-00000000-0000-0000-0000-standin00000", "nvidia0", "stand-in", "test"]
    utilisation.labels(*labels).set(37)
    temperature.labels(*labels).set(41)
    start_http_server(port, addr="127.0.0.1")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
