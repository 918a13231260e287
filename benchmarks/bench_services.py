"""Local services: start-up time of SeaweedFS, MLflow and ZenML, S3 round trips, and one model registration.

Prints figures; asserts nothing. Run: `python benchmarks/bench_services.py [--registrations 3]`.
Everything runs in a temporary state folder on free loopback ports and is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.config import load_config
from components.registry.lifecycle import register_student
from components.services.mlflow_server import MLflowServer
from components.services.seaweedfs import S3Credentials, SeaweedFSServer
from components.services.zenml_server import ZenMLServer


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 17, kernel_size=4, stride=4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registrations", type=int, default=3)
    parser.add_argument("--object-mb", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )

    with tempfile.TemporaryDirectory() as state:
        seaweed = SeaweedFSServer(Path(state), S3Credentials("BENCHKEY", "bench-secret"))
        started = time.perf_counter()
        s3 = seaweed.start()
        print(f"seaweedfs start-up until ListBuckets answers: {time.perf_counter() - started:6.2f} s")
        mlflow_server = MLflowServer(Path(state), s3)
        zenml_server = ZenMLServer(Path(state), s3)
        try:
            started = time.perf_counter()
            tracking_uri = mlflow_server.start()
            print(f"mlflow start-up until /health answers:       {time.perf_counter() - started:6.2f} s")
            started = time.perf_counter()
            zenml_server.start()
            print(f"zenml start-up until /health + API key:      {time.perf_counter() - started:6.2f} s")

            client = s3.client()
            payload = np.random.default_rng(0).bytes(args.object_mb << 20)
            started = time.perf_counter()
            client.put_object(Bucket=s3.bucket, Key="bench/blob", Body=payload)
            put_s = time.perf_counter() - started
            started = time.perf_counter()
            client.get_object(Bucket=s3.bucket, Key="bench/blob")["Body"].read()
            get_s = time.perf_counter() - started
            print(
                f"S3 put / get of {args.object_mb} MiB: {args.object_mb / put_s:7.1f} / {args.object_mb / get_s:7.1f} MiB/s"
            )

            cfg = load_config(
                None, ["input.image_size=[64, 48]", "registry.model_name=bench", "registry.experiment=bench"]
            )
            times = []
            for index in range(args.registrations):
                started = time.perf_counter()
                register_student(TinyNet(), cfg, {"AP": 0.1 * index}, "f" * 64, tracking_uri=tracking_uri)
                times.append(time.perf_counter() - started)
            print(
                f"register_student (tiny model, {args.registrations}x): median {np.median(times):.2f} s, max {max(times):.2f} s"
            )
        finally:
            started = time.perf_counter()
            zenml_server.stop()
            mlflow_server.stop()
            seaweed.stop()
            print(f"stop all three: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
